// Validates Istio objects (JSON files given as arguments) with
// @kubernetes-models/istio, the Istio CRD schemas as JavaScript models.
// The package is ES modules only; it is loaded from the directory in
// $ISTIO_MODELS (its node_modules/@kubernetes-models/istio), by file URL.
// Prints one line per file; exits 1 if any file fails.
const fs = require("fs");
const path = require("path");
const { pathToFileURL } = require("url");

async function main() {
  const root = process.env.ISTIO_MODELS;
  let failed = 0;
  for (const file of process.argv.slice(2)) {
    const object = JSON.parse(fs.readFileSync(file, "utf8"));
    try {
      const [group, version] = object.apiVersion.split("/");
      const models = await import(pathToFileURL(path.join(root, group, version, "index.js")).href);
      const Model = models[object.kind];
      if (!Model) throw new Error(`no model for ${object.apiVersion} ${object.kind}`);
      new Model(object).validate();
      console.log(`ok ${file} ${object.apiVersion} ${object.kind}`);
    } catch (e) {
      failed += 1;
      console.log(`FAIL ${file} ${object.apiVersion} ${object.kind}: ${e.message}`);
    }
  }
  process.exit(failed ? 1 : 0);
}

main();
