// Package node is the composition root of a haven node process: it starts
// the node's etcd member (or dials the external store), builds the agent,
// and wires the agent API, the dashboard, the proxy, the session store and
// systemd's notifications around it; RunWitness does the same for a witness.
package node
