// Package viplab holds the tests that run real haven agents in network
// namespaces (nodes on a bridge, a client namespace beside them) and check
// that the virtual IP follows the active node, reaches clients, and is
// never held by two nodes that both answer as active.
package viplab
