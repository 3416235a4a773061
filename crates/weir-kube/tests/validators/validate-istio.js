// Validates Istio objects (JSON files given as arguments) with
// @kubernetes-models/istio, the Istio CRD schemas as JavaScript models.
// The package has no networking.istio.io/v1 models; Istio's v1 schema is
// the v1beta1 schema promoted unchanged, so v1 objects are checked as v1beta1.
// Prints one line per file; exits 1 if any file fails.
const fs = require("fs");
let failed = 0;
for (const file of process.argv.slice(2)) {
  const object = JSON.parse(fs.readFileSync(file, "utf8"));
  const [group, version] = object.apiVersion.split("/");
  const checkedAs = version === "v1" ? "v1beta1" : version;
  try {
    const models = require(`@kubernetes-models/istio/${group}/${checkedAs}`);
    const Model = models[object.kind];
    if (!Model) throw new Error(`no model for ${object.apiVersion} ${object.kind}`);
    new Model({ ...object, apiVersion: `${group}/${checkedAs}` }).validate();
    console.log(`ok ${file} ${object.apiVersion} ${object.kind}`);
  } catch (e) {
    failed += 1;
    console.log(`FAIL ${file} ${object.apiVersion} ${object.kind}: ${e.message}`);
  }
}
process.exit(failed ? 1 : 0);
