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

/** The documents of the YAML files directly in `dir` (deploy/kubernetes itself; its sub-folders are other examples). */
function manifests (dir = kubeDir): Manifest[] {
  return readdirSync(dir).filter((name) => /\.ya?ml$/.test(name))
    .flatMap((name) => parseAllDocuments(readFileSync(join(dir, name), 'utf8')).map((d) => d.toJS() as Manifest))
}

const byKind = (kind: string, dir = kubeDir) => manifests(dir).filter((m) => m.kind === kind)
const ingressNginxDir = join(kubeDir, 'ingress-nginx')

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

test('ingress-nginx example: names, selectors, ports and the kustomization refer to each other', (t) => {
  const dir = ingressNginxDir
  const kinds = manifests(dir).map((m) => m.kind)
  for (const kind of ['Deployment', 'ConfigMap', 'Service', 'NetworkPolicy', 'Ingress', 'Kustomization']) t.true(kinds.includes(kind), kind)
  const [deployment] = byKind('Deployment', dir)
  const pod = deployment!.spec.template
  const labels = pod.metadata.labels
  const matches = (selector: Record<string, string>) => Object.entries(selector).every(([k, v]) => labels[k] === v)
  t.true(matches(deployment!.spec.selector.matchLabels))
  t.false(matches(byKind('Deployment')[0]!.spec.selector.matchLabels), 'the base Services do not select these pods')
  const container = pod.spec.containers[0]
  t.is(container.envFrom[0].secretRef.name, byKind('Secret')[0]!.metadata.name, 'the Secret of deploy/kubernetes/secret.yaml')
  const volume = pod.spec.volumes.find((v: Manifest) => v.configMap)
  t.is(volume.configMap.name, byKind('ConfigMap', dir)[0]!.metadata.name)
  const mount = container.volumeMounts.find((m: Manifest) => m.name === volume.name)
  t.is(mount.mountPath, '/etc/authgate')
  t.is(mount.subPath, undefined)
  t.true(container.args.includes('/etc/authgate/gateway.yaml'))
  for (const service of byKind('Service', dir)) {
    t.true(matches(service.spec.selector), service.metadata.name)
    for (const port of service.spec.ports) t.truthy(container.ports.find((p: Manifest) => p.name === port.targetPort), `${service.metadata.name} ${port.targetPort}`)
  }
  const [policy] = byKind('NetworkPolicy', dir)
  t.true(matches(policy!.spec.podSelector.matchLabels))
  for (const rule of policy!.spec.ingress) for (const port of rule.ports) t.truthy(container.ports.find((p: Manifest) => p.name === port.port), `NetworkPolicy port ${port.port}`)
  const [kustomization] = byKind('Kustomization', dir)
  const present = readdirSync(dir)
  for (const resource of kustomization!.resources) t.true(present.includes(resource), resource)
  t.deepEqual([...kustomization!.resources].sort(), present.filter((f) => f !== 'kustomization.yaml').sort(), 'every manifest is listed')
})

test('ingress-nginx example: auth-url names the decision listener\'s /nginx, every identity header is copied, and gateway.yaml passes check', async (t) => {
  const dir = ingressNginxDir
  const text = byKind('ConfigMap', dir)[0]!.data['gateway.yaml'] as string
  const gateway = parse(text)
  const decide = gateway.listeners.find((l: Manifest) => l.mode === 'decide')
  t.truthy(decide, 'a listener with mode: decide')
  t.true(decide.trustProxies.length > 0, 'trustProxies names the controller pods')
  const container = byKind('Deployment', dir)[0]!.spec.template.spec.containers[0]
  const containerPort = container.ports.find((p: Manifest) => p.containerPort === parseAddress(decide.address).port)
  t.truthy(containerPort, 'the decision listener\'s port is a container port')
  const [ingress] = byKind('Ingress', dir)
  const annotations = ingress!.metadata.annotations as Record<string, string>
  const authUrl = new URL(annotations['nginx.ingress.kubernetes.io/auth-url']!)
  t.is(authUrl.pathname, '/nginx')
  const service = byKind('Service', dir).find((s) => authUrl.hostname.startsWith(`${s.metadata.name}.`))
  t.truthy(service, `auth-url ${authUrl.hostname} names a Service of the example`)
  t.regex(authUrl.hostname, /^[a-z0-9-]+\.[a-z0-9-]+\.svc\.cluster\.local$/)
  const servicePort = service!.spec.ports.find((p: Manifest) => p.port === Number(authUrl.port))
  t.is(servicePort?.targetPort, containerPort.name)
  const copied = annotations['nginx.ingress.kubernetes.io/auth-response-headers']!.split(',').map((h) => h.trim().toLowerCase())
  for (const name of ['x-auth-subject', 'x-auth-client', 'x-auth-methods', 'x-auth-scopes', 'x-auth-tier', 'x-auth-identity', 'x-request-id']) {
    t.true(copied.includes(name), `auth-response-headers lists ${name}`)
  }
  const { issues, config } = await check(text, secrets)
  t.deepEqual(issues.map((i) => `${i.severity} ${/\[([a-z-]+)\]$/.exec(i.message)?.[1] ?? i.message}`), ['warning decision-listener-plain-http'],
    'plain HTTP inside the cluster, behind the NetworkPolicy: the one warning, explained in configmap.yaml')
  t.truthy(config)
})
