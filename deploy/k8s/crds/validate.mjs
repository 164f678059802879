// Validate the custom resources of a rendered kustomization against their CRDs' schemas.
//
//   node deploy/k8s/crds/validate.mjs RENDERED.yaml BUILTINS.yaml
//
// Reads every object of RENDERED.yaml. A custom resource of a known API group is checked here:
//
// - Strimzi (kafka.strimzi.io, core.strimzi.io), KEDA (keda.sh) and the Prometheus Operator
//   (monitoring.coreos.com) with the validators the @kubernetes-models npm packages generate from
//   those projects' CRDs (package.json pins them). Those validators let unknown fields through, so
//   the same objects are also type-checked against the packages' TypeScript types (tsc: an object
//   literal may only specify known properties), which catches a misspelt field at any depth;
// - KubeRay (ray.io) against the CRD the operator's Go module ships, downloaded from the Go module
//   proxy and checked against the hash pinned below (the project publishes no npm package).
//   Unknown fields fail there, as `kubectl apply --validate=strict` would refuse them.
//
// Every other object (the built-in kinds) is written to BUILTINS.yaml for kubernetes-validate,
// which stays strict and fails on a kind it has no schema for, so a custom resource of an API
// group this script does not know cannot pass unchecked. Prints one line per problem and exits 1
// when there is any.
import { execFileSync, spawnSync } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import Ajv from "ajv";
import { parseAllDocuments, parse, stringify } from "yaml";

/** The npm package whose models cover each API group. */
const NPM_MODELS = {
  "kafka.strimzi.io": "@kubernetes-models/strimzi-kafka-operator",
  "core.strimzi.io": "@kubernetes-models/strimzi-kafka-operator",
  "keda.sh": "@kubernetes-models/keda",
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
};

/** CRDs from Go modules: the module's h1 hash is pinned (go verifies the download against it). */
const GO_CRDS = [
  {
    group: "ray.io",
    module: "github.com/ray-project/kuberay/ray-operator",
    version: "v1.5.0",
    sum: "h1:KCjCQ7PSsvs9Ke+90CZbbs498nuaIJ/JkXk4vd54EVg=",
    files: ["config/crd/bases/ray.io_rayclusters.yaml"],
  },
];

function fail(message) {
  console.error(`ERROR: ${message}`);
  process.exit(2);
}

/** The directory of a Go module version, downloaded through the module proxy and hash-checked. */
function goModuleDir({ module, version, sum }) {
  let info;
  try {
    const out = execFileSync("go", ["mod", "download", "-json", `${module}@${version}`], {
      encoding: "utf8",
      env: { ...process.env, GOFLAGS: "-mod=mod" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    info = JSON.parse(out);
  } catch (error) {
    fail(`cannot download ${module}@${version} from the Go module proxy (needs Go): ${error.message}`);
  }
  if (info.Error) fail(`${module}@${version}: ${info.Error}`);
  if (info.Sum !== sum) fail(`${module}@${version} has hash ${info.Sum}, expected ${sum}: refusing its CRDs`);
  return info.Dir;
}

/**
 * A CRD version's openAPIV3Schema as JSON Schema for ajv, strict about unknown fields the way the
 * API server's structural schemas are: an object with declared properties takes no others, unless
 * the schema says `x-kubernetes-preserve-unknown-fields` or gives `additionalProperties`.
 */
function structural(schema, root = true) {
  if (Array.isArray(schema)) return schema.map((each) => structural(each, false));
  if (schema === null || typeof schema !== "object") return schema;
  const out = {};
  for (const [key, value] of Object.entries(schema)) {
    if (key.startsWith("x-kubernetes-")) continue;
    if (key === "properties") {
      out.properties = Object.fromEntries(
        Object.entries(value).map(([name, sub]) => [name, structural(sub, false)]),
      );
    } else if (["items", "additionalProperties", "not"].includes(key) && typeof value === "object") {
      out[key] = structural(value, false);
    } else if (["allOf", "anyOf", "oneOf"].includes(key)) {
      out[key] = value.map((each) => structural(each, false));
    } else {
      out[key] = value;
    }
  }
  if (schema["x-kubernetes-int-or-string"]) {
    delete out.type;
    out.anyOf = [...(out.anyOf ?? []), { type: "integer" }, { type: "string" }];
  }
  const open = schema["x-kubernetes-preserve-unknown-fields"] || "additionalProperties" in schema;
  if (schema.properties && !open) out.additionalProperties = false;
  if (root && out.properties?.metadata) out.properties.metadata = { type: "object" };
  return out;
}

/** Validators for the kinds of CRDs read from Go modules: "group/version/Kind" -> validate(obj). */
function goValidators() {
  // Formats of Kubernetes' OpenAPI: integer ranges are checked, the others (date-time, byte, ...)
  // only describe strings the API server parses itself.
  const ajv = new Ajv({ allErrors: true, strict: false, logger: false });
  const inRange = (bits) => (n) => Number.isInteger(n) && n >= -(2 ** (bits - 1)) && n < 2 ** (bits - 1);
  ajv.addFormat("int32", { type: "number", validate: inRange(32) });
  ajv.addFormat("int64", { type: "number", validate: inRange(64) });
  const validators = new Map();
  for (const source of GO_CRDS) {
    const dir = goModuleDir(source);
    for (const file of source.files) {
      const crd = parse(readFileSync(join(dir, file), "utf8"));
      for (const version of crd.spec.versions) {
        if (!version.served) continue;
        const check = ajv.compile(structural(version.schema.openAPIV3Schema));
        validators.set(`${crd.spec.group}/${version.name}/${crd.spec.names.kind}`, (object) =>
          check(object) ? [] : check.errors.map((e) => `${e.instancePath || "/"} ${e.message}${params(e)}`),
        );
      }
    }
  }
  return validators;
}

function params(error) {
  if (error.keyword === "additionalProperties") return `: ${error.params.additionalProperty}`;
  if (error.keyword === "enum") return `: ${error.params.allowedValues.join(", ")}`;
  return "";
}

const HERE = dirname(fileURLToPath(import.meta.url));

/**
 * Unknown fields of objects modelled by npm packages: each object becomes a typed constant of a
 * TypeScript file (one per line) that tsc checks; returns the problems by object index.
 */
function unknownFields(typed) {
  if (!typed.length) return new Map();
  const file = join(HERE, `.check-${process.pid}.ts`);
  const imports = typed.map(({ module, kind }, i) => `import type { I${kind} as T${i} } from "${module}";`);
  const constants = typed.map(({ object }, i) => `export const o${i}: T${i} = ${JSON.stringify(object)};`);
  writeFileSync(file, [...imports, ...constants].join("\n") + "\n");
  const tsc = join(HERE, "node_modules", "typescript", "bin", "tsc");
  const args = ["--noEmit", "--strict", "--skipLibCheck", "--module", "nodenext", "--moduleResolution", "nodenext"];
  const result = spawnSync(process.execPath, [tsc, ...args, file], { encoding: "utf8" });
  rmSync(file, { force: true });
  const problems = new Map();
  for (const line of result.stdout.split("\n")) {
    const match = line.match(/\.ts\((\d+),\d+\): error TS\d+: (.*)$/);
    if (!match) continue;
    const index = Number(match[1]) - imports.length - 1;
    const unknown = match[2].match(/and '"?([^'"]+)"?' does not exist in type/);
    const problem = unknown ? `unknown field ${unknown[1]}` : match[2].slice(0, 300);
    problems.set(index, [...(problems.get(index) ?? []), problem]);
  }
  if (result.status !== 0 && problems.size === 0) fail(`tsc failed: ${result.stdout}${result.stderr}`);
  return problems;
}

/** Problems of one custom resource per the @kubernetes-models validator of its kind. */
async function npmProblems(pkg, group, version, kind, object) {
  let model;
  try {
    model = (await import(`${pkg}/${group}/${version}/${kind}`))[kind];
  } catch {
    return [`${pkg} has no model for ${group}/${version} ${kind}`];
  }
  if (typeof model !== "function") return [`${pkg} has no model for ${group}/${version} ${kind}`];
  try {
    new model(object).validate();
    return [];
  } catch (error) {
    return error.message.split("\n").map((line) => line.replace(/^data/, ""));
  }
}

async function main([renderedPath, builtinsPath]) {
  if (!renderedPath || !builtinsPath) fail("usage: node validate.mjs RENDERED.yaml BUILTINS.yaml");
  const documents = parseAllDocuments(readFileSync(renderedPath, "utf8"));
  const builtins = [];
  const problems = [];
  let checked = 0;
  let fromGo = null;
  const typed = [];
  for (const document of documents) {
    if (document.errors.length) fail(`${renderedPath}: ${document.errors[0].message}`);
    const object = document.toJS();
    if (object === null) continue;
    const [group, version] = String(object.apiVersion).includes("/")
      ? object.apiVersion.split("/")
      : ["", object.apiVersion];
    const name = `${object.kind} ${object.metadata?.namespace ?? ""}/${object.metadata?.name ?? "?"}`;
    let found;
    if (NPM_MODELS[group]) {
      found = await npmProblems(NPM_MODELS[group], group, version, object.kind, object);
      if (!found.length) {
        typed.push({ module: `${NPM_MODELS[group]}/${group}/${version}/${object.kind}`, kind: object.kind, object, name });
      }
    } else if (GO_CRDS.some((source) => source.group === group)) {
      fromGo ??= goValidators();
      const validate = fromGo.get(`${group}/${version}/${object.kind}`);
      found = validate ? validate(object) : [`no served CRD version ${group}/${version} for ${object.kind}`];
    } else {
      builtins.push(object);
      continue;
    }
    checked += 1;
    problems.push(...found.map((problem) => `${name}: ${problem}`));
  }
  for (const [index, found] of unknownFields(typed)) {
    problems.push(...found.map((problem) => `${typed[index].name}: ${problem}`));
  }
  writeFileSync(builtinsPath, builtins.map((object) => `---\n${stringify(object)}`).join(""));
  for (const problem of problems) console.log(problem);
  console.error(
    problems.length
      ? `${problems.length} problems in ${checked} custom resources`
      : `${checked} custom resources valid against their CRDs`,
  );
  process.exit(problems.length ? 1 : 0);
}

await main(process.argv.slice(2));
