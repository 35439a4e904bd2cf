// deploy/: every Kubernetes manifest validated against its API schema
// (kubernetes-models, offline), plus the cross-checks a schema cannot make:
// the numbers that must agree with each other (probe ports and the --metrics
// port, the grace period and the shutdown flags, --workers and the CPU limit,
// the Service and HPA and what they point at), and the Dockerfile's rules.
// Each check is a function returning its problems, run on the real files
// (no problem) and on broken copies (the problem named): the checks can fail.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import { parseAllDocuments } from "yaml";
import { Deployment } from "kubernetes-models/apps/v1";
import { Service } from "kubernetes-models/v1";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2";
import { root, cliPath } from "./lib/procs.mjs";

const MODELS = { "apps/v1 Deployment": Deployment, "v1 Service": Service, "autoscaling/v2 HorizontalPodAutoscaler": HorizontalPodAutoscaler };
const k8sDir = join(root, "deploy", "k8s");

/** Every document of every YAML file in deploy/k8s/: {file, doc}. */
function loadDocs() {
  return readdirSync(k8sDir).filter((f) => /\.ya?ml$/.test(f)).sort().flatMap((file) =>
    parseAllDocuments(readFileSync(join(k8sDir, file), "utf8")).map((d) => {
      if (d.errors.length) throw new Error(`${file}: ${d.errors[0].message}`);
      return { file, doc: d.toJS() };
    }).filter((d) => d.doc !== null));
}

/** The schema's verdict: null, or the validator's message. */
function schemaError(doc) {
  const Model = MODELS[`${doc.apiVersion} ${doc.kind}`];
  if (!Model) return `no schema here for ${doc.apiVersion} ${doc.kind}`;
  try { new Model(doc).validate(); return null; } catch (e) { return e.message; }
}

const docs = loadDocs();
const one = (kind) => {
  const all = docs.filter((d) => d.doc.kind === kind);
  assert.is(all.length, 1, `one ${kind} in deploy/k8s/`);
  return structuredClone(all[0].doc);
};

/** `["--a", "1", "--b"]` -> Map { a: "1", b: true }. */
function flagMap(args) {
  const m = new Map();
  for (let i = 0; i < args.length; i++) {
    if (!args[i].startsWith("--")) continue;
    const next = args[i + 1];
    m.set(args[i].slice(2), next !== undefined && !next.startsWith("--") ? args[++i] : true);
  }
  return m;
}

/** "2" | "1500m" -> CPUs. */
const cpus = (q) => (String(q).endsWith("m") ? Number(String(q).slice(0, -1)) / 1000 : Number(q));

/** A probe's or Service's port (a number or a container port's name) as a number. */
function portOf(container, port) {
  if (typeof port === "number") return port;
  return (container.ports ?? []).find((p) => p.name === port)?.containerPort;
}

/** The cross-checks of a Deployment alone; [] when it is consistent. */
export function deploymentProblems(dep) {
  const problems = [];
  const pod = dep.spec.template;
  const c = pod.spec.containers.find((x) => x.name === "serve");
  if (!c) return ["no container named serve"];
  const flags = flagMap(c.args ?? []);
  const metrics = /^(.*):(\d+)$/.exec(String(flags.get("metrics") ?? ""));
  if (!metrics) return ["no --metrics HOST:PORT in the args"];
  const metricsPort = Number(metrics[2]);
  if (metrics[1] === "127.0.0.1" || metrics[1] === "localhost") problems.push("--metrics listens on loopback: the kubelet's probes and Prometheus cannot reach it");
  for (const [name, path] of [["readinessProbe", "/readyz"], ["livenessProbe", "/healthz"]]) {
    const g = c[name]?.httpGet;
    if (!g) { problems.push(`no ${name}.httpGet`); continue; }
    if (g.path !== path) problems.push(`${name} path ${g.path}, want ${path}`);
    if (portOf(c, g.port) !== metricsPort) problems.push(`${name} port ${g.port} is not the --metrics port ${metricsPort}`);
  }
  const ann = pod.metadata?.annotations ?? {};
  if (ann["prometheus.io/scrape"] !== "true") problems.push("prometheus.io/scrape is not \"true\"");
  if (Number(ann["prometheus.io/port"]) !== metricsPort) problems.push(`prometheus.io/port ${ann["prometheus.io/port"]} is not the --metrics port ${metricsPort}`);
  if (ann["prometheus.io/path"] !== "/metrics") problems.push("prometheus.io/path is not /metrics");
  // Grace: the kubelet runs preStop, then signals; the server says 503 on
  // /readyz for --shutdown-delay, then drains for at most --shutdown-timeout.
  const cmd = c.lifecycle?.preStop?.exec?.command ?? [];
  const preStopS = cmd[0] === "sleep" ? Number(cmd[1]) : Number(c.lifecycle?.preStop?.sleep?.seconds ?? NaN);
  if (!Number.isFinite(preStopS)) problems.push("no preStop sleep");
  const timeoutMs = Number(flags.get("shutdown-timeout")), delayMs = Number(flags.get("shutdown-delay"));
  if (!Number.isFinite(timeoutMs) || !Number.isFinite(delayMs)) problems.push("--shutdown-timeout and --shutdown-delay must both be set (their defaults are not the manifest's to guess)");
  const needS = preStopS + (timeoutMs + delayMs) / 1000;
  const grace = pod.spec.terminationGracePeriodSeconds;
  if (!(grace >= needS)) problems.push(`terminationGracePeriodSeconds ${grace} < preStop ${preStopS} s + --shutdown-delay ${delayMs} ms + --shutdown-timeout ${timeoutMs} ms`);
  // A draining pod must be seen unready before its listeners close.
  const rp = c.readinessProbe ?? {};
  const noticeS = (rp.periodSeconds ?? 10) * (rp.failureThreshold ?? 3);
  if (!(noticeS <= delayMs / 1000)) problems.push(`readiness notices a drain after ${noticeS} s (periodSeconds x failureThreshold), later than --shutdown-delay ${delayMs} ms`);
  const limit = c.resources?.limits?.cpu, request = c.resources?.requests?.cpu;
  if (Number(flags.get("workers")) !== cpus(limit)) problems.push(`--workers ${flags.get("workers")} is not the CPU limit ${limit}`);
  if (cpus(request) !== cpus(limit)) problems.push(`CPU request ${request} is not the limit ${limit} (a throttled reactor stalls every connection it holds)`);
  if (!c.resources?.limits?.memory) problems.push("no memory limit");
  const sel = dep.spec.selector?.matchLabels ?? {};
  for (const [k, v] of Object.entries(sel)) if (pod.metadata?.labels?.[k] !== v) problems.push(`selector ${k}=${v} does not match the pod's labels`);
  // Non-root and locked down: the pod, and every container in it.
  const psc = pod.spec.securityContext ?? {};
  if (psc.runAsNonRoot !== true) problems.push("pod securityContext.runAsNonRoot is not true");
  if (psc.runAsUser === 0) problems.push("pod runs as uid 0");
  for (const x of [...(pod.spec.initContainers ?? []), ...pod.spec.containers]) {
    const sc = x.securityContext ?? {};
    if (sc.allowPrivilegeEscalation !== false) problems.push(`${x.name}: allowPrivilegeEscalation is not false`);
    if (sc.readOnlyRootFilesystem !== true) problems.push(`${x.name}: readOnlyRootFilesystem is not true`);
    if (sc.privileged === true) problems.push(`${x.name}: privileged`);
    if (!(sc.capabilities?.drop ?? []).includes("ALL")) problems.push(`${x.name}: capabilities do not drop ALL`);
    if (sc.runAsUser === 0 || sc.runAsNonRoot === false) problems.push(`${x.name}: may run as root`);
  }
  const rootDir = flags.get("root");
  if (!(c.volumeMounts ?? []).some((m) => m.mountPath === rootDir)) problems.push(`--root ${rootDir} is not a mounted volume`);
  return problems;
}

/** The Service and the HPA against the Deployment; [] when they agree. */
export function wiringProblems(dep, svc, hpa) {
  const problems = [];
  const pod = dep.spec.template;
  const c = pod.spec.containers.find((x) => x.name === "serve");
  const labels = pod.metadata?.labels ?? {};
  const sel = Object.entries(svc.spec.selector ?? {});
  if (sel.length === 0) problems.push("the Service selects nothing");
  for (const [k, v] of sel) if (labels[k] !== v) problems.push(`the Service selects ${k}=${v}, which the pods do not carry`);
  const http = Number(flagMap(c.args).get("port"));
  for (const p of svc.spec.ports) if (portOf(c, p.targetPort ?? p.port) !== http) problems.push(`Service port ${p.port} targets ${p.targetPort}, not the --port ${http}`);
  const t = hpa.spec.scaleTargetRef;
  if (t.kind !== dep.kind || t.name !== dep.metadata.name || t.apiVersion !== dep.apiVersion) problems.push(`the HPA targets ${t.apiVersion} ${t.kind} ${t.name}, not the Deployment`);
  if (!(hpa.spec.metrics ?? []).some((m) => m.type === "Resource" && m.resource?.name === "cpu")) problems.push("the HPA does not scale on CPU");
  if (!c.resources?.requests?.cpu) problems.push("CPU utilization needs a CPU request");
  if (hpa.spec.minReplicas < 2) problems.push("minReplicas < 2: a rolling node drain would leave no pod");
  return problems;
}

/** The Dockerfile as instructions: [{op, args}] (continuations joined, comments dropped). */
function dockerInstructions(text) {
  const out = [];
  let cur = "";
  for (const raw of text.split("\n")) {
    if (!cur && /^\s*#/.test(raw)) continue;
    const line = raw.replace(/\s+$/, "");
    if (line.endsWith("\\")) { cur += line.slice(0, -1) + " "; continue; }
    cur += line;
    const m = /^\s*(\w+)\s+(.*)$/.exec(cur);
    if (m) out.push({ op: m[1].toUpperCase(), args: m[2].trim() });
    cur = "";
  }
  return out;
}

/** The Dockerfile's rules; [] when it keeps them. */
export function dockerfileProblems(text) {
  const problems = [];
  const ins = dockerInstructions(text);
  const argDefaults = Object.fromEntries(ins.filter((i) => i.op === "ARG" && i.args.includes("=")).map((i) => i.args.split("=")));
  const stages = [];
  for (const i of ins) {
    if (i.op === "FROM") stages.push({ from: i.args.split(/\s+/)[0].replace(/\$\{(\w+)\}/g, (_, n) => argDefaults[n] ?? ""), ins: [] });
    else if (stages.length) stages.at(-1).ins.push(i);
  }
  if (stages.length === 0) return ["no FROM"];
  for (const s of stages) if (!/^node:20(\.\d+){0,2}-(\w+-)?slim(@sha256:[0-9a-f]{64})?$/.test(s.from)) problems.push(`FROM ${s.from} is not a pinned Node 20 slim tag`);
  const final = stages.at(-1).ins;
  const user = final.filter((i) => i.op === "USER").at(-1)?.args.split(":")[0];
  if (!user) problems.push("no USER in the final stage (it would run as root)");
  else if (user === "root" || user === "0") problems.push(`USER ${user}`);
  else if (!/^\d+$/.test(user)) problems.push(`USER ${user} is not numeric: Kubernetes' runAsNonRoot cannot verify a name`);
  if (!final.some((i) => i.op === "RUN" && /\bnpm ci\b[^&;]*--omit=dev/.test(i.args))) problems.push("the final stage does not install with npm ci --omit=dev");
  if (!final.some((i) => i.op === "COPY" && /\.tgz\b/.test(i.args))) problems.push("the final stage does not install the packed tarball");
  const last = (op) => final.filter((i) => i.op === op).at(-1)?.args;
  if (last("STOPSIGNAL") !== "SIGTERM") problems.push("STOPSIGNAL is not SIGTERM");
  const exposed = (last("EXPOSE") ?? "").split(/\s+/).map((p) => Number(p.split("/")[0]));
  for (const p of [8080, 9100]) if (!exposed.includes(p)) problems.push(`port ${p} is not EXPOSEd`);
  let entry = [];
  try { entry = JSON.parse(last("ENTRYPOINT") ?? "[]"); } catch { problems.push("ENTRYPOINT is not in exec form (a shell as PID 1 does not pass SIGTERM on)"); }
  if (!/(^|\/)(tini|node)$/.test(entry[0] ?? "")) problems.push(`PID 1 is ${entry[0]}, not tini or node`);
  if (!(last("VOLUME") ?? "").includes("/srv/www")) problems.push("no VOLUME for the static root");
  return problems;
}

// ---- the schemas ----

test("deploy/k8s holds a Deployment, a Service and an HPA", () => {
  assert.equal(docs.map((d) => d.doc.kind).sort(), ["Deployment", "HorizontalPodAutoscaler", "Service"]);
});

for (const { file, doc } of docs) {
  test(`${file}: ${doc.kind} ${doc.metadata?.name} is valid ${doc.apiVersion}`, () => {
    assert.is(schemaError(doc), null);
  });
}

test("a broken copy fails the schema (the validator is on)", () => {
  const dep = one("Deployment");
  dep.spec.template.spec.containers[0].ports[0].containerPort = "eighty";
  assert.match(schemaError(dep), /containerPort must be integer/);
  const dep2 = one("Deployment");
  delete dep2.spec.selector;
  assert.match(schemaError(dep2), /selector/);
  const hpa = one("HorizontalPodAutoscaler");
  hpa.spec.metrics[0].resource.target.type = undefined;
  assert.ok(schemaError(hpa), "an HPA target without a type passed");
  assert.match(schemaError({ apiVersion: "v1", kind: "Podd", metadata: {} }), /no schema/);
});

// ---- what a schema cannot check ----

test("the Deployment's numbers agree (probes, annotations, grace, workers, security)", () => {
  assert.equal(deploymentProblems(one("Deployment")), []);
});

test("the Service and the HPA point at the Deployment", () => {
  assert.equal(wiringProblems(one("Deployment"), one("Service"), one("HorizontalPodAutoscaler")), []);
});

test("broken copies fail the cross-checks, each for its reason", () => {
  const broken = (edit) => { const d = one("Deployment"); edit(d, d.spec.template.spec.containers.find((c) => c.name === "serve")); return deploymentProblems(d).join("\n"); };
  const setFlag = (c, name, value) => { c.args[c.args.indexOf(`--${name}`) + 1] = value; };
  assert.match(broken((d) => { d.spec.template.spec.terminationGracePeriodSeconds = 10; }), /terminationGracePeriodSeconds 10 </);
  assert.match(broken((d, c) => { setFlag(c, "shutdown-timeout", "60000"); }), /terminationGracePeriodSeconds/);
  assert.match(broken((d, c) => { setFlag(c, "workers", "4"); }), /--workers 4 is not the CPU limit/);
  assert.match(broken((d, c) => { c.readinessProbe.periodSeconds = 10; }), /readiness notices a drain after 20 s/);
  assert.match(broken((d, c) => { c.resources.limits.cpu = "1500m"; }), /CPU limit 1500m/);
  assert.match(broken((d, c) => { setFlag(c, "metrics", "0.0.0.0:9200"); }), /readinessProbe port metrics is not the --metrics port 9200/);
  assert.match(broken((d, c) => { setFlag(c, "metrics", "127.0.0.1:9100"); }), /loopback/);
  assert.match(broken((d, c) => { c.livenessProbe.httpGet.path = "/readyz"; }), /livenessProbe path \/readyz/);
  assert.match(broken((d, c) => { c.readinesProbe = c.readinessProbe; delete c.readinessProbe; }), /no readinessProbe/); // a typo the schema lets through
  assert.match(broken((d) => { d.spec.template.metadata.annotations["prometheus.io/port"] = "8080"; }), /prometheus.io\/port 8080/);
  assert.match(broken((d, c) => { c.securityContext.capabilities.drop = ["NET_RAW"]; }), /serve: capabilities do not drop ALL/);
  assert.match(broken((d) => { d.spec.template.spec.initContainers[0].securityContext.readOnlyRootFilesystem = false; }), /site: readOnlyRootFilesystem/);
  assert.match(broken((d) => { d.spec.template.spec.securityContext.runAsNonRoot = false; }), /runAsNonRoot/);
  assert.match(broken((d) => { d.spec.template.metadata.labels = { app: "other" }; }), /selector app.kubernetes.io\/name=wasm-reactor does not match/);
  const svc = one("Service"), hpa = one("HorizontalPodAutoscaler");
  svc.spec.selector = { "app.kubernetes.io/name": "wasm-reactr" };
  hpa.spec.scaleTargetRef.name = "other";
  const w = wiringProblems(one("Deployment"), svc, hpa).join("\n");
  assert.match(w, /the Service selects app.kubernetes.io\/name=wasm-reactr/);
  assert.match(w, /the HPA targets apps\/v1 Deployment other/);
});

test("every flag the manifest and the image pass exists in `serve --help`", () => {
  const help = execFileSync(process.execPath, [cliPath, "serve", "--help"], { encoding: "utf8" });
  const known = new Set([...help.matchAll(/^\s+--([a-z][a-z-]*)/gm)].map((m) => m[1]));
  assert.ok(known.has("workers") && known.has("shutdown-timeout"), "the help parser found no flags");
  const dep = one("Deployment");
  const cmd = JSON.parse(dockerInstructions(readFileSync(join(root, "deploy", "Dockerfile"), "utf8")).filter((i) => i.op === "CMD").at(-1).args);
  const used = new Set([...flagMap(dep.spec.template.spec.containers[0].args).keys(), ...flagMap(cmd).keys()]);
  assert.ok(used.has("metrics") && used.has("shutdown-delay"), "the manifest passes --metrics and --shutdown-delay");
  const missing = [...used].filter((f) => !known.has(f));
  assert.equal(missing, []);
});

// ---- the Dockerfile ----

const dockerfile = readFileSync(join(root, "deploy", "Dockerfile"), "utf8");

test("the Dockerfile keeps its rules (Node 20 slim, non-root, npm ci --omit=dev of the tarball, SIGTERM)", () => {
  assert.equal(dockerfileProblems(dockerfile), []);
});

test("broken Dockerfiles fail the checks", () => {
  assert.match(dockerfileProblems(dockerfile.replace(/^USER .*$/m, "USER root")).join("\n"), /USER root/);
  assert.match(dockerfileProblems(dockerfile.replace(/^USER .*$/m, "USER node")).join("\n"), /not numeric/);
  assert.match(dockerfileProblems(dockerfile.replace(/NODE_IMAGE=\S+/, "NODE_IMAGE=node:20")).join("\n"), /FROM node:20 is not/);
  assert.match(dockerfileProblems(dockerfile.replace(/npm ci --omit=dev/g, "npm install")).join("\n"), /npm ci --omit=dev/);
  assert.match(dockerfileProblems(dockerfile.replace(/^ENTRYPOINT .*$/m, "ENTRYPOINT node /app/bin/wasm-reactor.js")).join("\n"), /exec form/);
  assert.match(dockerfileProblems(dockerfile.replace(/^STOPSIGNAL .*$/m, "STOPSIGNAL SIGKILL")).join("\n"), /STOPSIGNAL/);
});

test.run();
