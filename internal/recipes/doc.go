// Package recipes tests the recipes in examples/: each runs a real service
// from Debian's packages under real haven agents, with the service's own
// client, across kill -9 of the service, kill -9 of the agent and a
// switchover, and reports the failover times, errors and data lost.
package recipes
