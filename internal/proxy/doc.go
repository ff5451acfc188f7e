// Package proxy is haven's traffic path: an HTTP (L7) or TCP (L4) proxy that
// sends clients to the node(s) that should get traffic.
//
// Which nodes those are is decided by a pure function, Decide, from three
// inputs: the cluster as the coordination store shows it (who holds the
// leader key, what each node published), the proxy's own probe of each
// node's /lb-check, and how fresh the store view is. A node is a target only
// while both the store and the node itself say it should serve, and only
// while the store view is recent enough that its lease cannot have expired.
//
// The driver (Proxy) watches the store, so a role change reaches it without
// waiting on a polling interval; when the leader changes it probes the new
// one every few milliseconds until it answers 200. While there is no target,
// requests wait in a bounded hold queue and are released the moment one
// appears. Idempotent requests that fail before any response byte are
// retried on the next target; others get 502/503 with Retry-After. When a
// node stops being a target, its in-flight requests may finish for
// drain_grace, and its WebSocket and TCP connections are closed once another
// node has taken over.
//
// Plain HTTP/1.1 backends are reached through a small connection pool of the
// package's own (pool.go): one synchronous round trip per request on a kept
// connection, without http.Transport's per-connection goroutines, which is
// what lets the proxy get close to HAProxy on two cores.
package proxy
