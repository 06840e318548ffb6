import { randomBytes } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import test from 'ava'
import { parseAllDocuments, parse } from 'yaml'
import { checkConfig } from '../gateway/config/load.js'
import { lintConfig } from '../gateway/lint.js'
import { parseAddress } from '../gateway/net.js'

type Manifest = Record<string, any>

const deployDir = new URL('../deploy/', import.meta.url).pathname
const kubeDir = join(deployDir, 'kubernetes')

function yamlFiles (dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) return yamlFiles(path)
    return /\.ya?ml$/.test(entry.name) ? [path] : []
  })
}

function manifests (): Manifest[] {
  return yamlFiles(kubeDir).flatMap((file) => parseAllDocuments(readFileSync(file, 'utf8')).map((d) => d.toJS() as Manifest))
}

const byKind = (kind: string) => manifests().filter((m) => m.kind === kind)

/** `authgate check` on a gateway.yaml given as text, with the secrets the deployment would provide. */
async function check (text: string, env: NodeJS.ProcessEnv) {
  const dir = await mkdtemp(join(tmpdir(), 'authgate-deploy-'))
  try {
    await writeFile(join(dir, 'gateway.yaml'), text)
    return checkConfig(join(dir, 'gateway.yaml'), { env: { NODE_ENV: 'production', ...env } })
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

const secrets = { AUTHGATE_ADMIN_TOKEN: randomBytes(32).toString('base64'), REDIS_URL: 'redis://redis.internal:6379' }

test('every YAML file under deploy/ parses, each document without errors', (t) => {
  const files = yamlFiles(deployDir)
  t.true(files.length >= 8)
  for (const file of files) {
    const docs = parseAllDocuments(readFileSync(file, 'utf8'))
    t.true(docs.length > 0, file)
    for (const doc of docs) t.deepEqual(doc.errors.map((e) => e.message), [], file)
  }
})

test('the Kubernetes manifests have the kinds a deployment needs, each with apiVersion and name', (t) => {
  const kinds = manifests().map((m) => m.kind)
  for (const kind of ['Deployment', 'ConfigMap', 'Secret', 'Service', 'PodDisruptionBudget', 'HorizontalPodAutoscaler']) {
    t.true(kinds.includes(kind), kind)
  }
  for (const m of manifests().filter((m) => m.kind !== 'Kustomization')) {
    t.truthy(m.apiVersion, m.kind)
    t.truthy(m.metadata?.name, m.kind)
  }
})

test('probes hit /readyz and /healthz on the admin port of the embedded gateway.yaml, which passes check', async (t) => {
  const [deployment] = byKind('Deployment')
  const [configMap] = byKind('ConfigMap')
  const container = deployment!.spec.template.spec.containers[0]
  const text = configMap!.data['gateway.yaml'] as string
  const gateway = parse(text)
  const admin = parseAddress(gateway.admin.address)
  const portOf = (name: string | number) => typeof name === 'number' ? name : container.ports.find((p: Manifest) => p.name === name)?.containerPort
  t.is(container.readinessProbe.httpGet.path, '/readyz')
  t.is(container.livenessProbe.httpGet.path, '/healthz')
  t.is(portOf(container.readinessProbe.httpGet.port), admin.port)
  t.is(portOf(container.livenessProbe.httpGet.port), admin.port)
  t.not(admin.host, '127.0.0.1', 'the kubelet must reach the admin listener')
  for (const listener of gateway.listeners) t.truthy(container.ports.find((p: Manifest) => p.containerPort === parseAddress(listener.address).port), listener.name)

  const { issues, config } = await check(text, secrets)
  t.deepEqual(issues.map((i) => `${i.line}:${i.col} ${i.severity} ${i.message}`), [])
  t.deepEqual(lintConfig(config!.doc), [])
  t.true(Number(deployment!.spec.template.spec.terminationGracePeriodSeconds) > Number.parseInt(gateway.shutdownTimeout, 10))
})

test('names and selectors refer to each other: Secret, ConfigMap volume, Services, PDB, HPA', (t) => {
  const [deployment] = byKind('Deployment')
  const pod = deployment!.spec.template
  const labels = pod.metadata.labels
  const matches = (selector: Record<string, string>) => Object.entries(selector).every(([k, v]) => labels[k] === v)
  t.true(matches(deployment!.spec.selector.matchLabels))
  const container = pod.spec.containers[0]
  t.is(container.envFrom[0].secretRef.name, byKind('Secret')[0]!.metadata.name)
  const secretKeys = Object.keys(byKind('Secret')[0]!.stringData)
  const embedded = byKind('ConfigMap')[0]!.data['gateway.yaml'] as string
  for (const name of embedded.matchAll(/\$\{env:([A-Z0-9_]+)\}/g)) t.true(secretKeys.includes(name[1]!), `${name[1]} is in the Secret`)
  const volume = pod.spec.volumes.find((v: Manifest) => v.configMap)
  t.is(volume.configMap.name, byKind('ConfigMap')[0]!.metadata.name)
  const mount = container.volumeMounts.find((m: Manifest) => m.name === volume.name)
  t.is(mount.mountPath, '/etc/authgate')
  t.is(mount.subPath, undefined, 'a subPath mount never sees ConfigMap updates')
  t.true(container.args.includes('/etc/authgate/gateway.yaml'))
  for (const service of byKind('Service')) {
    t.true(matches(service.spec.selector), service.metadata.name)
    for (const port of service.spec.ports) t.truthy(container.ports.find((p: Manifest) => p.name === port.targetPort), `${service.metadata.name} ${port.targetPort}`)
  }
  t.true(matches(byKind('PodDisruptionBudget')[0]!.spec.selector.matchLabels))
  t.is(byKind('HorizontalPodAutoscaler')[0]!.spec.scaleTargetRef.name, deployment!.metadata.name)
  t.is(byKind('HorizontalPodAutoscaler')[0]!.spec.scaleTargetRef.kind, 'Deployment')
})

test('the kustomization lists files that exist', (t) => {
  const [kustomization] = manifests().filter((m) => m.kind === 'Kustomization')
  const present = readdirSync(kubeDir)
  for (const resource of kustomization!.resources) t.true(present.includes(resource), resource)
})

test('compose runs the gateway, Redis and an upstream, and its gateway.yaml passes check', async (t) => {
  const compose = parse(readFileSync(join(deployDir, 'compose.yaml'), 'utf8')) as Manifest
  t.deepEqual(Object.keys(compose.services).sort(), ['gateway', 'redis', 'whoami'])
  const gateway = compose.services.gateway
  const mount = (gateway.volumes as string[]).find((v) => v.endsWith(':/etc/authgate:ro'))!
  const text = readFileSync(join(deployDir, mount.split(':')[0]!, 'gateway.yaml'), 'utf8')
  const doc = parse(text)
  t.is(new URL(doc.upstreams.whoami.url).hostname, 'whoami')
  t.is(new URL(gateway.environment.REDIS_URL).hostname, 'redis')
  t.true(gateway.command.includes('/etc/authgate/gateway.yaml'))
  const admin = parseAddress(doc.admin.address)
  t.truthy((gateway.ports as string[]).find((p) => p.endsWith(`:${admin.port}`)))
  const { issues, config } = await check(text, { ...secrets, REDIS_URL: gateway.environment.REDIS_URL })
  t.deepEqual(issues.map((i) => `${i.line}:${i.col} ${i.severity} ${i.message}`), [])
  t.deepEqual(lintConfig(config!.doc), [])
})
