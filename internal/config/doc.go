// Package config reads a haven configuration file into a typed, validated
// Config.
//
// One YAML file describes the whole cluster and is the same on every node;
// the agent picks its own entry with Config.NodeByName. Reading goes in
// three steps, all inside Parse:
//
//  1. The file is decoded into a yaml.Node tree, not into structs, so that
//     every value keeps its line number and unknown or duplicate keys can be
//     reported instead of silently ignored.
//  2. The tree is walked field by field into Config. Omitted fields take
//     their defaults, and the timing preset (lan, lan-fast or wan) is applied with any
//     per-field overrides from timings:.
//  3. The result is checked as a whole: node names and addresses, the
//     number of etcd voters, and the timing rules in checkTiming on which
//     fencing depends.
//
// Every problem found is reported, not just the first, as one *Error whose
// lines read FILE:LINE: FIELD: what is wrong; what to do. A Config returned
// without error is safe to run; nothing later has to re-validate it.
//
// Describe renders the effective configuration for `haven config check`,
// including the fence deadline and the worst-case failover times that
// Timing.WorstCase derives from the timings.
package config
