// The server as npm fhir-kit-client sees it.
//
// Usage: node node_clients.mjs BASE_URL (after `npm install` in this folder).
// Exits non-zero, naming the check, when anything is not as the client expects.
// Run by tests/clients.rs.

import { Client, CapabilityTool } from 'fhir-kit-client';

const baseUrl = process.argv[2];
const client = new Client({ baseUrl });

function check(condition, what) {
  if (!condition) {
    console.error(`FAILED: ${what}`);
    process.exit(1);
  }
}

const statement = await client.capabilityStatement();
const tool = new CapabilityTool(statement);
check(tool.resourceCan('Patient', 'create'), 'Patient create is listed');
check(tool.supportFor({ resourceType: 'Appointment', capabilityType: 'searchInclude' }),
  'includes are listed');
check(tool.capabilityContents({ resourceType: 'Appointment', capabilityType: 'searchInclude' })
  .includes('Appointment:patient'), 'Appointment:patient is an include');
check(tool.capabilityContents({ resourceType: 'Patient', capabilityType: 'searchRevInclude' })
  .includes('Appointment:patient'), 'Appointment:patient is a revinclude of Patient');
check(tool.supportFor({ resourceType: 'Patient', capabilityType: 'operation', where: { name: 'validate' } }),
  '$validate is listed on Patient');
check((statement.instantiates || []).includes('http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data'),
  'the Bulk Data capability is declared');
for (const operation of tool.serverCapabilities().operation) {
  const id = operation.definition.split('/').pop();
  const definition = await client.read({ resourceType: 'OperationDefinition', id: id === 'Claim-submit-837P' ? 'Claim-submit' : id });
  check(definition.url === operation.definition, `the definition of ${operation.name} is served`);
}

const family = `Kitclient${Date.now()}`;
const patient = { resourceType: 'Patient', name: [{ family, given: ['Kim'] }], gender: 'female' };
const outcome = await client.operation({ name: 'validate', resourceType: 'Patient', input: patient });
check(outcome.resourceType === 'OperationOutcome' && outcome.issue[0].severity === 'information', '$validate');
for (let n = 0; n < 3; n += 1) {
  await client.create({ resourceType: 'Patient', body: patient });
}
const page = await client.search({ resourceType: 'Patient', searchParams: { family, _count: 2 } });
const next = await client.nextPage({ bundle: page });
check(next.entry.length === 1, 'the next page has the third patient');
const id = page.entry[0].resource.id;
const summary = await client.request(`Patient/${id}?_elements=gender`);
check(summary.gender === 'female' && summary.name === undefined, '_elements on read');
const patched = await client.patch({ resourceType: 'Patient', id,
  jsonPatch: [{ op: 'replace', path: '/gender', value: 'other' }] });
check(patched.gender === 'other', 'JSON Patch');
const meta = await client.operation({ name: 'meta-add', resourceType: 'Patient', id, input: {
  resourceType: 'Parameters', parameter: [{ name: 'meta', valueMeta: { tag: [{ system: 'urn:t', code: 'k' }] } }] } });
check(meta.parameter[0].valueMeta.tag[0].code === 'k', '$meta-add');
console.log('node client: all checks passed');
