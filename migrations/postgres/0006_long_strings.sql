-- Long strings: the indexed value_norm keeps at most the first 512 bytes of a value (a
-- b-tree entry cannot pass about 2.7 KB); the whole normalized text of a longer one is kept
-- here (NULL otherwise), unindexed, for :contains and for search values longer than the
-- prefix. The server rebuilds the index at start (index format 4).
ALTER TABLE idx_string ADD COLUMN value_long TEXT COLLATE "C";
