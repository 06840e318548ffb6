import test, { type ExecutionContext } from 'ava'
import fc from 'fast-check'
import { compileRoutes, hostPatternProblem, methodRestrictedOverlaps, pathPatternProblem, requestHostname, shadowedRoutes, type RouteSpec } from './match.js'

type Spec = Omit<RouteSpec, 'index'>

function table (...specs: Spec[]) {
  return compileRoutes(specs.map((spec, index) => ({ ...spec, index })))
}

/** The name of the route a request gets, or undefined. */
function routeFor (routes: ReturnType<typeof table>, path: string, request: { host?: string, method?: string, listener?: string } = {}) {
  return routes.match({ host: request.host ?? 'api.example.com', path, method: request.method ?? 'GET', listener: request.listener ?? 'public' }).route?.name
}

function holds (t: ExecutionContext, property: fc.IProperty<any>, params: fc.Parameters<any> = {}) {
  const details = fc.check(property, { numRuns: 1000, ...params })
  t.false(details.failed, fc.defaultReportMessage(details) ?? '')
}

test('an exact pattern matches only that path, with the trailing slash significant', (t) => {
  const routes = table({ name: 'orders', path: '/v1/orders' })
  t.is(routeFor(routes, '/v1/orders'), 'orders')
  t.is(routeFor(routes, '/v1/orders/'), undefined)
  t.is(routeFor(routes, '/v1/orders/1'), undefined)
  t.is(routeFor(routes, '/v1/order'), undefined)
  t.is(routeFor(routes, '/v1/ordersx'), undefined)
  t.is(routeFor(routes, '/v1'), undefined)
})

test('an exact pattern with a trailing slash does not match the path without it', (t) => {
  const routes = table({ name: 'dir', path: '/v1/orders/' })
  t.is(routeFor(routes, '/v1/orders/'), 'dir')
  t.is(routeFor(routes, '/v1/orders'), undefined)
})

test('the root pattern matches only the root', (t) => {
  const routes = table({ name: 'root', path: '/' })
  t.is(routeFor(routes, '/'), 'root')
  t.is(routeFor(routes, '/a'), undefined)
})

test('a one-segment pattern matches exactly one non-empty segment', (t) => {
  const routes = table({ name: 'one', path: '/v1/orders/*' })
  t.is(routeFor(routes, '/v1/orders/42'), 'one')
  t.is(routeFor(routes, '/v1/orders/a.b~c'), 'one')
  t.is(routeFor(routes, '/v1/orders/'), undefined)
  t.is(routeFor(routes, '/v1/orders'), undefined)
  t.is(routeFor(routes, '/v1/orders/42/'), undefined)
  t.is(routeFor(routes, '/v1/orders/42/items'), undefined)
  t.is(routeFor(routes, '/v1/ordersx/42'), undefined)
})

test('a one-segment pattern at the root matches every single-segment path', (t) => {
  const routes = table({ name: 'top', path: '/*' })
  t.is(routeFor(routes, '/health'), 'top')
  t.is(routeFor(routes, '/'), undefined)
  t.is(routeFor(routes, '/a/'), undefined)
  t.is(routeFor(routes, '/a/b'), undefined)
})

test('an any-depth pattern matches its base, the base with a slash, and everything below', (t) => {
  const routes = table({ name: 'tree', path: '/v1/orders/**' })
  t.is(routeFor(routes, '/v1/orders'), 'tree')
  t.is(routeFor(routes, '/v1/orders/'), 'tree')
  t.is(routeFor(routes, '/v1/orders/42'), 'tree')
  t.is(routeFor(routes, '/v1/orders/42/items/'), 'tree')
  t.is(routeFor(routes, '/v1/ordersx'), undefined)
  t.is(routeFor(routes, '/v1/ordersx/1'), undefined)
  t.is(routeFor(routes, '/v1/order'), undefined)
  t.is(routeFor(routes, '/v1'), undefined)
})

test('the catch-all pattern matches every path', (t) => {
  const routes = table({ name: 'all', path: '/**' })
  for (const path of ['/', '/a', '/a/', '/a/b/c', '/%2561']) t.is(routeFor(routes, path), 'all')
})

test('matching is case-sensitive', (t) => {
  const routes = table({ name: 'admin', path: '/admin/**' }, { name: 'rest', path: '/*' })
  t.is(routeFor(routes, '/admin'), 'admin')
  t.is(routeFor(routes, '/Admin'), 'rest')
  t.is(routeFor(routes, '/ADMIN/x'), undefined)
})

test('the first matching route in file order wins', (t) => {
  const routes = table(
    { name: 'health', path: '/health' },
    { name: 'order', path: '/v1/orders/*' },
    { name: 'orders', path: '/v1/orders/**' },
    { name: 'all', path: '/**' },
  )
  t.is(routeFor(routes, '/health'), 'health')
  t.is(routeFor(routes, '/v1/orders/1'), 'order')
  t.is(routeFor(routes, '/v1/orders/1/x'), 'orders')
  t.is(routeFor(routes, '/v1/orders'), 'orders')
  t.is(routeFor(routes, '/other'), 'all')
  t.is(routeFor(routes, '/'), 'all')
})

test('file order is the index, whatever order the array is in', (t) => {
  const routes = compileRoutes([
    { name: 'late', path: '/**', index: 1 },
    { name: 'early', path: '/v1/**', index: 0 },
  ])
  t.is(routeFor(routes, '/v1/x'), 'early')
  t.deepEqual(routes.routes.map((r) => r.name), ['early', 'late'])
})

test('a catch-all route placed first takes requests from routes bucketed under their first segment', (t) => {
  const routes = table({ name: 'all', path: '/**', hosts: ['a.example.com'] }, { name: 'v1', path: '/v1/**' })
  t.is(routeFor(routes, '/v1/x', { host: 'a.example.com' }), 'all')
  t.is(routeFor(routes, '/v1/x', { host: 'b.example.com' }), 'v1')
  // A method-restricted catch-all placed first refuses the other methods everywhere (DESIGN.md, Method mismatch).
  const deletes = table({ name: 'all', path: '/**', methods: ['DELETE'] }, { name: 'v1', path: '/v1/**' })
  t.is(routeFor(deletes, '/v1/x', { method: 'DELETE' }), 'all')
  t.deepEqual(deletes.match({ host: 'h', path: '/v1/x', method: 'GET', listener: 'public' }), { route: undefined, pathMatched: true })
})

test('hosts match case-insensitively, without the port or a trailing dot', (t) => {
  const routes = table({ name: 'api', hosts: ['API.example.com'], path: '/**' })
  t.is(routeFor(routes, '/x', { host: 'api.example.com' }), 'api')
  t.is(routeFor(routes, '/x', { host: 'Api.Example.COM:8443' }), 'api')
  t.is(routeFor(routes, '/x', { host: 'api.example.com.' }), 'api')
  t.is(routeFor(routes, '/x', { host: 'api.example.com.:443' }), 'api')
  t.is(routeFor(routes, '/x', { host: 'www.example.com' }), undefined)
  t.is(routeFor(routes, '/x', { host: 'api.example.com.evil' }), undefined)
  t.is(routeFor(routes, '/x', { host: '' }), undefined)
})

test('a wildcard host matches one or more labels in front of its suffix, but not the suffix itself', (t) => {
  const routes = table({ name: 'tenants', hosts: ['*.example.com'], path: '/**' })
  t.is(routeFor(routes, '/x', { host: 'a.example.com' }), 'tenants')
  t.is(routeFor(routes, '/x', { host: 'a.b.example.com:80' }), 'tenants')
  t.is(routeFor(routes, '/x', { host: 'example.com' }), undefined)
  t.is(routeFor(routes, '/x', { host: 'badexample.com' }), undefined)
  t.is(routeFor(routes, '/x', { host: 'a.example.com.evil.org' }), undefined)
})

test('IPv6 literal hosts keep their brackets and lose the port', (t) => {
  t.is(requestHostname('[::1]:8080'), '[::1]')
  t.is(requestHostname('[::1]'), '[::1]')
  t.is(requestHostname('127.0.0.1:80'), '127.0.0.1')
  const routes = table({ name: 'local', hosts: ['[::1]', '127.0.0.1'], path: '/**' })
  t.is(routeFor(routes, '/', { host: '[::1]:8080' }), 'local')
  t.is(routeFor(routes, '/', { host: '127.0.0.1:9' }), 'local')
  t.is(routeFor(routes, '/', { host: '[::2]' }), undefined)
})

test('a route without hosts matches any host, including none', (t) => {
  const routes = table({ name: 'any', path: '/**' })
  t.is(routeFor(routes, '/', { host: '' }), 'any')
  t.is(routeFor(routes, '/', { host: 'whatever:1' }), 'any')
})

test('methods restrict a route; a path match with another method is no route', (t) => {
  const routes = table({ name: 'read', path: '/v1/**', methods: ['get', 'HEAD'] })
  t.is(routeFor(routes, '/v1/x', { method: 'GET' }), 'read')
  t.is(routeFor(routes, '/v1/x', { method: 'HEAD' }), 'read')
  t.deepEqual(routes.match({ host: 'h', path: '/v1/x', method: 'POST', listener: 'public' }), { route: undefined, pathMatched: true })
  t.deepEqual(routes.match({ host: 'h', path: '/v2/x', method: 'POST', listener: 'public' }), { route: undefined, pathMatched: false })
})

test('a method sent in lower case gets the route of its upper-case name, not a later one', (t) => {
  const routes = table({ name: 'protected', path: '/v1/**', methods: ['GET'] }, { name: 'open', path: '/**' })
  t.is(routeFor(routes, '/v1/x', { method: 'get' }), 'protected')
  t.is(routeFor(routes, '/v1/x', { method: 'POST' }), undefined)
  t.is(routeFor(routes, '/v2/x', { method: 'POST' }), 'open')
})

test('issue 14: a method a restricted route refuses never falls through to a later public catch-all', (t) => {
  const routes = table(
    { name: 'orders-read', path: '/v1/orders/**', methods: ['GET'] },
    { name: 'public', path: '/v1/**' },
  )
  for (const method of ['DELETE', 'POST', 'PUT', 'PATCH', 'OPTIONS', 'delete']) {
    t.deepEqual(routes.match({ host: 'h', path: '/v1/orders/42', method, listener: 'public' }), { route: undefined, pathMatched: true }, method)
  }
  t.is(routeFor(routes, '/v1/orders/42', { method: 'GET' }), 'orders-read')
  t.is(routeFor(routes, '/v1/orders', { method: 'DELETE' }), undefined)
  // Outside the restricted route's paths the catch-all takes every method.
  t.is(routeFor(routes, '/v1/ordersx', { method: 'DELETE' }), 'public')
  t.is(routeFor(routes, '/v1/other/42', { method: 'DELETE' }), 'public')
})

test('HEAD is accepted wherever GET is, by the same route', (t) => {
  const routes = table(
    { name: 'orders-read', path: '/v1/orders/**', methods: ['GET'] },
    { name: 'public', path: '/v1/**' },
  )
  t.is(routeFor(routes, '/v1/orders/42', { method: 'HEAD' }), 'orders-read')
  t.is(routeFor(routes, '/v1/orders/42', { method: 'head' }), 'orders-read')
  const posts = table({ name: 'write', path: '/v1/**', methods: ['POST'] })
  t.is(routeFor(posts, '/v1/x', { method: 'HEAD' }), undefined)
})

test('routes of one path split by method each get their methods, whatever their hosts', (t) => {
  const routes = table(
    { name: 'write', path: '/v1/**', methods: ['POST'] },
    { name: 'read', path: '/v1/**', methods: ['GET'] },
    { name: 'admin', path: '/v1/**', methods: ['DELETE'], hosts: ['admin.example.com'] },
  )
  t.is(routeFor(routes, '/v1/a', { method: 'POST' }), 'write')
  t.is(routeFor(routes, '/v1/a', { method: 'GET' }), 'read')
  t.is(routeFor(routes, '/v1/a', { method: 'HEAD' }), 'read')
  t.is(routeFor(routes, '/v1/a', { method: 'DELETE', host: 'admin.example.com' }), 'admin')
  t.is(routeFor(routes, '/v1/a', { method: 'DELETE' }), undefined)
  t.is(routeFor(routes, '/v1/a', { method: 'PUT' }), undefined)
})

test('after a refusal, a later route of the same path pattern for every method takes the rest', (t) => {
  const routes = table(
    { name: 'read', path: '/v1/orders/**', methods: ['GET'] },
    { name: 'catch-all', path: '/**' },
    { name: 'rest', path: '/v1/orders/**' },
  )
  t.is(routeFor(routes, '/v1/orders/1', { method: 'GET' }), 'read')
  t.is(routeFor(routes, '/v1/orders/1', { method: 'DELETE' }), 'rest')
  t.is(routeFor(routes, '/v2', { method: 'DELETE' }), 'catch-all')
})

test('after a refusal, a later route that names the method takes it, whatever its pattern', (t) => {
  // The layout `authgate init --scenario payments` writes: POST on the collection, GET on it and below.
  const routes = table(
    { name: 'payments-create', path: '/v1/payments', methods: ['POST'] },
    { name: 'public', path: '/**' },
    { name: 'payments-read', path: '/v1/payments/**', methods: ['GET'] },
  )
  t.is(routeFor(routes, '/v1/payments', { method: 'POST' }), 'payments-create')
  t.is(routeFor(routes, '/v1/payments', { method: 'GET' }), 'payments-read')
  t.is(routeFor(routes, '/v1/payments', { method: 'HEAD' }), 'payments-read')
  t.is(routeFor(routes, '/v1/payments', { method: 'DELETE' }), undefined)
  t.is(routeFor(routes, '/v1/payments/7', { method: 'DELETE' }), 'public')
})

test('a route whose host or listener does not match refuses nothing: the search goes on as before', (t) => {
  const routes = table(
    { name: 'other-host', path: '/v1/orders/**', methods: ['GET'], hosts: ['other.example.com'] },
    { name: 'other-listener', path: '/v1/orders/**', methods: ['GET'], listeners: ['local'] },
    { name: 'public', path: '/v1/**' },
  )
  t.is(routeFor(routes, '/v1/orders/1', { method: 'DELETE', host: 'api.example.com', listener: 'public' }), 'public')
  t.is(routeFor(routes, '/v1/orders/1', { method: 'DELETE', host: 'other.example.com', listener: 'public' }), undefined)
  t.is(routeFor(routes, '/v1/orders/1', { method: 'DELETE', host: 'api.example.com', listener: 'local' }), undefined)
})

test('listeners restrict a route to the named listeners', (t) => {
  const routes = table(
    { name: 'payments', path: '/v1/payments/**', listeners: ['public'] },
    { name: 'internal', path: '/v1/**', listeners: ['local', 'admin-net'] },
  )
  t.is(routeFor(routes, '/v1/payments/1', { listener: 'public' }), 'payments')
  t.is(routeFor(routes, '/v1/payments/1', { listener: 'local' }), 'internal')
  t.is(routeFor(routes, '/v1/other', { listener: 'public' }), undefined)
  t.is(routeFor(routes, '/v1/other', { listener: 'admin-net' }), 'internal')
})

test('a listener or host mismatch is not reported as a path match', (t) => {
  const routes = table({ name: 'r', path: '/a', listeners: ['local'], hosts: ['a.example'], methods: ['GET'] })
  t.like(routes.match({ host: 'a.example', path: '/a', method: 'GET', listener: 'public' }), { route: undefined, pathMatched: false })
  t.like(routes.match({ host: 'b.example', path: '/a', method: 'GET', listener: 'local' }), { route: undefined, pathMatched: false })
  t.like(routes.match({ host: 'a.example', path: '/a', method: 'PUT', listener: 'local' }), { route: undefined, pathMatched: true })
})

test('the matched route is the spec object that was compiled, extra fields included', (t) => {
  const spec = { name: 'r', path: '/a', index: 0, upstream: 'demo' }
  const routes = compileRoutes([spec])
  t.is(routes.match({ host: '', path: '/a', method: 'GET', listener: 'x' }).route, spec)
})

const badPatterns: Array<[string, RegExp]> = [
  ['v1/orders', /starts with \//],
  ['', /starts with \//],
  ['/v1/*/items', /last segment/],
  ['/v1/ord*', /last segment/],
  ['/v1/***', /last segment/],
  ['/v1/**/x', /last segment/],
  ['/v1/../admin', /dot segment/],
  ['/v1/%2fadmin/**', /encoded slash/],
  ['/a;b', /semicolon/],
  ['/v1?x=1', /no query/],
  ['/%61dmin/**', /write "\/admin\/\*\*"/],
  ['//v1//x', /write "\/v1\/x"/],
  ['/v1//**', /write "\/v1\/\*\*"/],
  ['//**', /write "\/\*\*"/],
  ['/a%2a', /write "\/a%2A"/],
]
for (const [pattern, problem] of badPatterns) {
  test(`path pattern ${JSON.stringify(pattern)} is refused with a fix`, (t) => {
    t.regex(pathPatternProblem(pattern) ?? '', problem)
    t.throws(() => compileRoutes([{ name: 'r', path: pattern, index: 0 }]), { instanceOf: TypeError })
  })
}

test('well-formed path patterns have no problem', (t) => {
  for (const pattern of ['/', '/*', '/**', '/v1', '/v1/', '/v1/*', '/v1/**', '/v1/a.b/~c', '/%C3%A9/**', '/a%2A']) {
    t.is(pathPatternProblem(pattern), undefined, pattern)
  }
})

test('host patterns with a port, a path or a misplaced wildcard are refused', (t) => {
  for (const host of ['', 'api.example.com:443', 'https://api.example.com', 'a.*.com', '*', '*.', 'api*.example.com', 'a b', 'bücher.example']) {
    t.truthy(hostPatternProblem(host), host)
  }
  for (const host of ['api.example.com', '*.example.com', 'API.Example.com.', '[::1]', '127.0.0.1']) {
    t.is(hostPatternProblem(host), undefined, host)
  }
})

test('empty hosts, methods or listeners lists are refused rather than read as "any"', (t) => {
  t.throws(() => compileRoutes([{ name: 'r', path: '/', hosts: [], index: 0 }]), { instanceOf: TypeError })
  t.throws(() => compileRoutes([{ name: 'r', path: '/', methods: [], index: 0 }]), { instanceOf: TypeError })
  t.throws(() => compileRoutes([{ name: 'r', path: '/', listeners: [], index: 0 }]), { instanceOf: TypeError })
})

// Shadowing: [earlier, later, shadowed?]
const shadowCases: Array<[string, Spec, Spec, boolean]> = [
  ['the same exact path', { name: 'a', path: '/v1/x' }, { name: 'b', path: '/v1/x' }, true],
  ['a different exact path', { name: 'a', path: '/v1/x' }, { name: 'b', path: '/v1/x/' }, false],
  ['a catch-all before anything', { name: 'a', path: '/**' }, { name: 'b', path: '/v1/*' }, true],
  ['an any-depth pattern before its base', { name: 'a', path: '/v1/**' }, { name: 'b', path: '/v1' }, true],
  ['an any-depth pattern before its base with a slash', { name: 'a', path: '/v1/**' }, { name: 'b', path: '/v1/' }, true],
  ['an any-depth pattern before a deeper one', { name: 'a', path: '/v1/**' }, { name: 'b', path: '/v1/orders/**' }, true],
  ['an any-depth pattern before the same', { name: 'a', path: '/v1/**' }, { name: 'b', path: '/v1/**' }, true],
  ['an any-depth pattern before a one-segment one below it', { name: 'a', path: '/v1/**' }, { name: 'b', path: '/v1/*' }, true],
  ['an any-depth pattern before a sibling prefix', { name: 'a', path: '/v1/**' }, { name: 'b', path: '/v10/**' }, false],
  ['an any-depth pattern before a one-segment sibling', { name: 'a', path: '/v1/**' }, { name: 'b', path: '/v10/*' }, false],
  ['an any-depth pattern before a sibling exact path', { name: 'a', path: '/v1/**' }, { name: 'b', path: '/v1x' }, false],
  ['a deeper any-depth pattern before a broader one', { name: 'a', path: '/v1/orders/**' }, { name: 'b', path: '/v1/**' }, false],
  ['a one-segment pattern before a path it matches', { name: 'a', path: '/v1/*' }, { name: 'b', path: '/v1/x' }, true],
  ['a one-segment pattern before a deeper path', { name: 'a', path: '/v1/*' }, { name: 'b', path: '/v1/x/y' }, false],
  ['a one-segment pattern before the base with a slash', { name: 'a', path: '/v1/*' }, { name: 'b', path: '/v1/' }, false],
  ['a one-segment pattern before an any-depth one', { name: 'a', path: '/v1/*' }, { name: 'b', path: '/v1/**' }, false],
  ['an exact path before a one-segment pattern', { name: 'a', path: '/v1/x' }, { name: 'b', path: '/v1/*' }, false],
  ['all methods before some', { name: 'a', path: '/v1/**' }, { name: 'b', path: '/v1/x', methods: ['GET'] }, true],
  ['more methods before fewer', { name: 'a', path: '/v1/**', methods: ['GET', 'post'] }, { name: 'b', path: '/v1/x', methods: ['POST'] }, true],
  ['fewer methods before more', { name: 'a', path: '/v1/**', methods: ['GET'] }, { name: 'b', path: '/v1/x', methods: ['GET', 'POST'] }, false],
  // b takes every method, but a refuses all but GET on b's path and b has another pattern: b never gets a request.
  ['some methods before all', { name: 'a', path: '/v1/**', methods: ['GET'] }, { name: 'b', path: '/v1/x' }, true],
  ['some methods before all of the same pattern', { name: 'a', path: '/v1/**', methods: ['GET'] }, { name: 'b', path: '/v1/**' }, false],
  ['GET before HEAD', { name: 'a', path: '/v1/**', methods: ['GET'] }, { name: 'b', path: '/v1/x', methods: ['HEAD'] }, true],
  ['HEAD before GET', { name: 'a', path: '/v1/**', methods: ['HEAD'] }, { name: 'b', path: '/v1/x', methods: ['GET'] }, false],
  ['any host before one host', { name: 'a', path: '/**' }, { name: 'b', path: '/x', hosts: ['a.example.com'] }, true],
  ['one host before any host', { name: 'a', path: '/**', hosts: ['a.example.com'] }, { name: 'b', path: '/x' }, false],
  ['a wildcard host before a host under it', { name: 'a', path: '/**', hosts: ['*.example.com'] }, { name: 'b', path: '/x', hosts: ['A.example.com'] }, true],
  ['a wildcard host before a narrower wildcard', { name: 'a', path: '/**', hosts: ['*.example.com'] }, { name: 'b', path: '/x', hosts: ['*.eu.example.com'] }, true],
  ['a wildcard host before its bare suffix', { name: 'a', path: '/**', hosts: ['*.example.com'] }, { name: 'b', path: '/x', hosts: ['example.com'] }, false],
  ['a host before a wildcard', { name: 'a', path: '/**', hosts: ['a.example.com'] }, { name: 'b', path: '/x', hosts: ['*.example.com'] }, false],
  ['hosts covering only some of the later hosts', { name: 'a', path: '/**', hosts: ['a.example.com'] }, { name: 'b', path: '/x', hosts: ['a.example.com', 'b.example.com'] }, false],
  ['all listeners before one', { name: 'a', path: '/**' }, { name: 'b', path: '/x', listeners: ['public'] }, true],
  ['one listener before another', { name: 'a', path: '/**', listeners: ['local'] }, { name: 'b', path: '/x', listeners: ['public'] }, false],
  ['one listener before all', { name: 'a', path: '/**', listeners: ['local'] }, { name: 'b', path: '/x' }, false],
]
for (const [what, earlier, later, expected] of shadowCases) {
  test(`shadowing: ${what} ${expected ? 'is' : 'is not'} reported`, (t) => {
    const found = shadowedRoutes([{ ...earlier, index: 0 }, { ...later, index: 1 }])
    t.deepEqual(found, expected ? [{ route: 1, by: 0 }] : [])
  })
}

test('shadowing names the first route that shadows, once per shadowed route', (t) => {
  const found = shadowedRoutes([
    { name: 'a', path: '/v1/**', methods: ['GET'], index: 0 },
    { name: 'b', path: '/**', index: 1 },
    { name: 'c', path: '/v1/x', methods: ['GET'], index: 2 },
    { name: 'd', path: '/v2', index: 3 },
  ])
  t.deepEqual(found, [{ route: 2, by: 0 }, { route: 3, by: 1 }])
})

test('a route covered only by two earlier routes together is not reported', (t) => {
  const found = shadowedRoutes([
    { name: 'get', path: '/v1/**', methods: ['GET'], index: 0 },
    { name: 'post', path: '/v1/**', methods: ['POST'], index: 1 },
    { name: 'both', path: '/v1/x', methods: ['GET', 'POST'], index: 2 },
  ])
  t.deepEqual(found, [])
})

test('a route for every method does not shadow a later one that a refusal before it lets through', (t) => {
  // POST /v1/x: `get` refuses it, `all` (another pattern, no methods) is passed over, `posts` names POST.
  const named = shadowedRoutes([
    { name: 'get', path: '/v1/x', methods: ['GET'], index: 0 },
    { name: 'all', path: '/**', index: 1 },
    { name: 'posts', path: '/v1/**', methods: ['POST'], index: 2 },
  ])
  t.deepEqual(named, [])
  // A later route for every method is passed over too after that refusal: `all` takes everything else.
  const unnamed = shadowedRoutes([
    { name: 'get', path: '/v1/x', methods: ['GET'], index: 0 },
    { name: 'all', path: '/**', index: 1 },
    { name: 'v1', path: '/v1/**', index: 2 },
  ])
  t.deepEqual(unnamed, [{ route: 2, by: 1 }])
})

test('method-restricted routes that keep other methods from a later catch-all are listed once per catch-all', (t) => {
  const found = methodRestrictedOverlaps([
    { name: 'orders-read', path: '/v1/orders/**', methods: ['GET'], index: 0 },
    { name: 'orders-write', path: '/v1/orders/**', methods: ['POST'], index: 1 },
    { name: 'health', path: '/health', methods: ['GET'], index: 2 },
    { name: 'public', path: '/v1/**', index: 3 },
    { name: 'rest', path: '/**', index: 4 },
  ])
  t.deepEqual(found, [
    { route: 3, by: 0, methods: ['GET', 'HEAD'] },
    { route: 4, by: 0, methods: ['GET', 'HEAD'] },
  ])
})

test('no method-restricted overlap where a route names its methods, another host applies, or a sibling takes the rest', (t) => {
  const specs = (list: Spec[]) => list.map((spec, index) => ({ ...spec, index }))
  // The later route names its methods: it gets them after the refusal (the payments layout).
  t.deepEqual(methodRestrictedOverlaps(specs([
    { name: 'create', path: '/v1/payments', methods: ['POST'] },
    { name: 'read', path: '/v1/payments/**', methods: ['GET'] },
  ])), [])
  // Disjoint hosts, listeners or paths: no request meets both.
  t.deepEqual(methodRestrictedOverlaps(specs([
    { name: 'a', path: '/v1/**', methods: ['GET'], hosts: ['a.example.com'], listeners: ['local'] },
    { name: 'b', path: '/v1/**', listeners: ['local'], hosts: ['*.b.example.com'] },
    { name: 'c', path: '/v1/x/*', methods: ['GET'], listeners: ['public'] },
    { name: 'd', path: '/v1/x/y/z/**', listeners: ['public'] },
    { name: 'e', path: '/v2/**' },
  ])), [])
  // Same pattern: a method split of one path, not a catch-all.
  t.deepEqual(methodRestrictedOverlaps(specs([
    { name: 'read', path: '/v1/**', methods: ['GET'] },
    { name: 'rest', path: '/v1/**' },
  ])), [])
  // A later sibling for every method takes what `read` refuses, so nothing there is a 404.
  t.deepEqual(methodRestrictedOverlaps(specs([
    { name: 'read', path: '/v1/orders/**', methods: ['GET'] },
    { name: 'public', path: '/v1/**' },
    { name: 'rest', path: '/v1/orders/**' },
  ])), [])
})

// Random tables checked against a direct reading of the patterns (regular expressions, no buckets).
const SEGMENTS = ['v1', 'v10', 'v2', 'a', 'orders', '']
const segment = fc.constantFrom(...SEGMENTS)
const patternArb = fc.tuple(fc.array(fc.constantFrom('v1', 'v10', 'v2', 'a', 'orders'), { maxLength: 3 }),
  fc.constantFrom('', '/', '/*', '/**')).map(([parts, tail]) => {
  const base = '/' + parts.join('/')
  if (tail === '') return base
  if (base === '/') return tail === '/' ? '/' : tail
  return base + tail
})
const pathArb = fc.array(segment, { minLength: 1, maxLength: 4 }).map((parts) => ('/' + parts.join('/')).replace(/\/+/g, '/'))
const hostArb = fc.constantFrom('a.example.com', 'b.example.com', 'x.a.example.com', 'example.com')
const specArb = fc.record({
  path: patternArb,
  hosts: fc.option(fc.subarray(['a.example.com', '*.example.com', '*.a.example.com', 'example.com'], { minLength: 1 }), { nil: undefined }),
  methods: fc.option(fc.subarray(['GET', 'POST', 'PUT'], { minLength: 1 }), { nil: undefined }),
  listeners: fc.option(fc.subarray(['public', 'local'], { minLength: 1 }), { nil: undefined }),
})
const requestArb = fc.record({
  path: pathArb,
  host: hostArb,
  method: fc.constantFrom('GET', 'HEAD', 'POST', 'PUT', 'DELETE'),
  listener: fc.constantFrom('public', 'local'),
})

function patternRegex (pattern: string): RegExp {
  const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  if (pattern === '/**') return /^\/.*$/
  if (pattern.endsWith('/**')) return new RegExp('^' + escape(pattern.slice(0, -3)) + '(/.*)?$')
  if (pattern.endsWith('/*')) return new RegExp('^' + escape(pattern.slice(0, -1)) + '[^/]+$')
  return new RegExp('^' + escape(pattern) + '$')
}

type Probe = { path: string, host: string, method: string, listener: string }
type Plain = Pick<RouteSpec, 'path' | 'hosts' | 'methods' | 'listeners'>

/** Path, host and listener match. */
function directPlace (spec: Plain, request: Probe): boolean {
  const hostOk = spec.hosts === undefined || spec.hosts.some((h) => h.startsWith('*.')
    ? request.host.endsWith(h.slice(1)) && request.host.length > h.length - 1
    : request.host === h)
  return patternRegex(spec.path).test(request.path) && hostOk &&
    (spec.listeners === undefined || spec.listeners.includes(request.listener))
}

/** The method is accepted: listed, or HEAD where GET is listed, or no list. */
function directMethod (spec: Plain, method: string): boolean {
  return spec.methods === undefined || spec.methods.includes(method) || (method === 'HEAD' && spec.methods.includes('GET'))
}

function directMatch (spec: Plain, request: Probe): boolean {
  return directPlace(spec, request) && directMethod(spec, request.method)
}

/**
 * DESIGN.md, Method mismatch, read directly: the first route in order that matches, except that after a route has
 * matched path, host and listener but refused the method, a route without `methods` is taken only if its pattern is
 * that of a refusing route. -1: no route.
 */
function directChoice (specs: readonly Plain[], request: Probe): number {
  const refused: string[] = []
  for (const [index, spec] of specs.entries()) {
    if (!directPlace(spec, request)) continue
    if (!directMethod(spec, request.method)) { refused.push(spec.path); continue }
    if (refused.length === 0 || spec.methods !== undefined || refused.includes(spec.path)) return index
  }
  return -1
}

test('the compiled table picks the same route as trying every pattern in order', (t) => {
  holds(t, fc.property(fc.array(specArb, { minLength: 1, maxLength: 12 }), fc.array(requestArb, { minLength: 1, maxLength: 20 }), (specs, requests) => {
    const routes = compileRoutes(specs.map((spec, index) => ({ ...spec, name: `r${index}`, index })))
    return requests.every((request) => {
      const expected = directChoice(specs, request)
      const result = routes.match(request)
      const refused = specs.some((spec) => directPlace(spec, request) && !directMethod(spec, request.method))
      return expected === -1
        ? result.route === undefined && result.pathMatched === refused
        : result.route?.index === expected
    })
  }))
})

/** Concrete paths a pattern matches, for probing it. */
function instancesOf (pattern: string): string[] {
  if (pattern.endsWith('/**')) {
    const base = pattern.slice(0, -3)
    return [base || '/', base + '/', base + '/v1', base + '/v10/a', base + '/orders/']
  }
  if (pattern.endsWith('/*')) return ['v1', 'v10', 'x'].map((segment) => pattern.slice(0, -1) + segment)
  return [pattern]
}

const PROBE_HOSTS = ['a.example.com', 'b.example.com', 'x.a.example.com', 'example.com']
const PROBE_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE']
const PROBE_LISTENERS = ['public', 'local']

/** Requests on the paths of the given patterns, with every host, method and listener the generators use. */
function probes (patterns: readonly string[]): Probe[] {
  const out: Probe[] = []
  for (const path of new Set(patterns.flatMap(instancesOf))) {
    for (const host of PROBE_HOSTS) {
      for (const method of PROBE_METHODS) for (const listener of PROBE_LISTENERS) out.push({ path, host, method, listener })
    }
  }
  return out
}

test('a route reported as shadowed is never the route a request gets', (t) => {
  let pairs = 0
  holds(t, fc.property(fc.array(specArb, { minLength: 2, maxLength: 8 }), (specs) => {
    const indexed = specs.map((spec, index) => ({ ...spec, name: `r${index}`, index }))
    const reported = shadowedRoutes(indexed)
    pairs += reported.length
    if (reported.length === 0) return true
    // Every request on the shadowed routes' paths: none is given to a shadowed route.
    const shadowed = new Set(reported.map(({ route }) => route))
    return probes(reported.map(({ route }) => specs[route]!.path)).every((request) => !shadowed.has(directChoice(specs, request)))
  }), { numRuns: 3000 })
  t.true(pairs > 100, `only ${pairs} shadowed pairs were generated`)
})

test('where a request is 404 that a later route would match on its own, check reports that route', (t) => {
  let cases = 0
  holds(t, fc.property(fc.array(specArb, { minLength: 2, maxLength: 8 }), (specs) => {
    const indexed = specs.map((spec, index) => ({ ...spec, name: `r${index}`, index }))
    const reported = new Set([...shadowedRoutes(indexed), ...methodRestrictedOverlaps(indexed)].map(({ route }) => route))
    return probes(specs.map((spec) => spec.path)).every((request) => {
      if (directChoice(specs, request) !== -1) return true
      const wouldMatch = specs.findIndex((spec) => directMatch(spec, request))
      if (wouldMatch === -1) return true
      cases++
      return reported.has(wouldMatch)
    })
  }), { numRuns: 1000 })
  t.true(cases > 100, `only ${cases} refused requests were generated`)
})
