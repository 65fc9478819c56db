"""The server as two Python FHIR client libraries nobody here wrote see it.

Usage: python3 python_clients.py BASE_URL
Needs PyPI fhirpy and fhirclient (see requirements.txt). Exits non-zero, naming the check,
when anything is not as a client expects. Run by tests/clients.rs.
"""

import sys

from fhirclient import client as smart_client
from fhirclient.models.patient import Patient as SmartPatient
from fhirclient.models.humanname import HumanName
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome

MRN = "http://example.org/mrn"


def check(condition, what):
    if not condition:
        raise SystemExit(f"FAILED: {what}")


def with_fhirpy(base):
    fhir = SyncFHIRClient(base)
    for n in range(5):
        patient = fhir.resource(
            "Patient",
            identifier=[{"system": MRN, "value": f"py-{n}"}],
            name=[{"family": "Pyclient", "given": [f"N{n}"]}],
            gender="female",
        )
        patient.save()
        check(patient.id and patient.meta["versionId"] == "1", "fhirpy save gets id and version")

    # Paging: fhirpy follows the next links.
    everyone = fhir.resources("Patient").search(family="Pyclient").limit(2).fetch_all()
    check(len(everyone) == 5, f"fhirpy pages through 5 patients, got {len(everyone)}")

    # get_or_create sends the criteria as query parameters of a POST: refused, not a duplicate.
    search = fhir.resources("Patient").search(identifier=f"{MRN}|py-0")
    duplicate = fhir.resource("Patient", identifier=[{"system": MRN, "value": "py-0"}])
    try:
        search.get_or_create(duplicate)
        check(False, "POST with search parameters is refused")
    except OperationOutcome as outcome:
        check("identifier" in str(outcome), f"the refusal names the parameter: {outcome}")
    check(search.count() == 1, "no duplicate patient was created")

    # _elements on a search, as fhirpy sends it.
    cut = fhir.resources("Patient").search(identifier=f"{MRN}|py-1").elements("gender").first()
    check(cut.get("name") is None and cut["gender"] == "female", "fhirpy elements()")

    # Update and delete.
    first = search.first()
    first["gender"] = "other"
    first.save()
    check(first.meta["versionId"] == "2", "fhirpy update makes version 2")
    first.delete()
    check(search.count() == 0, "fhirpy delete")


def with_fhirclient(base):
    smart = smart_client.FHIRClient(settings={"app_id": "tests", "api_base": base})
    check(smart.ready or smart.prepare(), "fhirclient reads the CapabilityStatement")
    patient = SmartPatient()
    name = HumanName()
    name.family = "Smartclient"
    name.given = ["Ann"]
    patient.name = [name]
    patient.gender = "female"
    created = patient.create(smart.server)
    check(created and created.get("id"), "fhirclient create answers with the resource")
    read = SmartPatient.read(created["id"], smart.server)
    check(read.name[0].family == "Smartclient", "fhirclient read")
    found = SmartPatient.where(struct={"family": "Smartclient"}).perform_resources(smart.server)
    check(len(found) == 1, "fhirclient search")


if __name__ == "__main__":
    base_url = sys.argv[1]
    with_fhirpy(base_url)
    with_fhirclient(base_url)
    print("python clients: all checks passed")
