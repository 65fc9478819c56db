"""The PyPI `fhirclient` completes a SMART standalone patient launch against the server
and reads its patient, as an app would: fhirclient reads the oauth-uris extension of the
CapabilityStatement, builds the authorize URL (with PKCE), and exchanges the code; the
user's part (the login and consent pages) is played with `requests`, which fhirclient
itself depends on.

Usage: smart_launch.py BASE CLIENT_ID REDIRECT_URI USERNAME PASSWORD PATIENT_ID
"""

import html
import re
import sys

import requests
from fhirclient import client
from fhirclient.models.patient import Patient

base, client_id, redirect_uri, username, password, patient_id = sys.argv[1:7]

smart = client.FHIRClient(settings={
    "app_id": client_id,
    "api_base": base,
    "redirect_uri": redirect_uri,
    "scope": "launch/patient patient/*.rs openid fhirUser",
})
assert not smart.ready
authorize_url = smart.authorize_url
assert authorize_url.startswith(base + "/auth/authorize?"), authorize_url
assert "code_challenge_method=S256" in authorize_url


def fields(page):
    """The hidden and preset fields of the page's form."""
    return {
        html.unescape(name): html.unescape(value)
        for name, value in re.findall(r'name="([^"]+)" value="([^"]*)"', page)
    }


browser = requests.Session()
login = browser.get(authorize_url)
assert login.status_code == 200, login.text
form = fields(login.text)
form.update({"username": username, "password": password})
consent = browser.post(base + "/auth/login", data=form)
assert 'name="ticket"' in consent.text, consent.text
form = fields(consent.text)
form.pop("grant", None)
form.pop("decision", None)
granted = re.findall(r'name="grant" value="([^"]+)"', consent.text)
answer = browser.post(
    base + "/auth/consent",
    data=list(form.items()) + [("grant", html.unescape(g)) for g in granted] + [("decision", "allow")],
    allow_redirects=False,
)
assert answer.status_code == 302, answer.text
callback = answer.headers["location"]
assert callback.startswith(redirect_uri), callback

smart.handle_callback(callback)
assert smart.ready
assert smart.patient_id == patient_id, smart.patient_id
patient = Patient.read(patient_id, smart.server)
assert patient.id == patient_id
try:
    Patient.read("someone-else", smart.server)
    raise AssertionError("another patient was readable")
except Exception as error:  # fhirclient raises on 404
    assert "404" in str(error), error
print("fhirclient standalone launch: ok")
