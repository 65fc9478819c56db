-- Nobody booked twice (scheduling).
--
-- time_claims: the time each Appointment that holds time (pending, booked, arrived,
-- checked-in) claims, one row per actor (practitioner, room, device, patient), widened by
-- that actor's buffers. Written in the same transaction as the Appointment (every write
-- path: create, update, patch, delete, transaction, import); a write that would put more
-- claims on an actor's time than the actor's capacity is refused. expires_us: when a hold
-- lapses (NULL: never); an expired hold claims nothing.
CREATE TABLE time_claims (
    tid         INTEGER NOT NULL,
    holder      TEXT NOT NULL,          -- the Appointment's id
    actor       TEXT NOT NULL,          -- Practitioner/7, Location/room-2, Patient/p1
    start_us    BIGINT NOT NULL,
    end_us      BIGINT NOT NULL,
    expires_us  BIGINT
);
CREATE INDEX time_claims_actor ON time_claims (tid, actor, start_us);
CREATE INDEX time_claims_holder ON time_claims (tid, holder);

-- time_policies: the buffers (microseconds) and capacity each active Schedule sets for its
-- actors (from its SchedulingParameters extension), written with the Schedule. An actor
-- without one has no buffers and a capacity of 1.
CREATE TABLE time_policies (
    tid         INTEGER NOT NULL,
    schedule    TEXT NOT NULL,
    actor       TEXT NOT NULL,
    before_us   BIGINT NOT NULL,
    after_us    BIGINT NOT NULL,
    capacity    INTEGER NOT NULL,
    PRIMARY KEY (tid, schedule, actor)
);
CREATE INDEX time_policies_actor ON time_policies (tid, actor);
