// Package scalebench measures whole `usage-sync --once` runs, as child processes, against a fresh database and the simulated upstream with latency (`make bench-scale`).
//
// The package holds only tests: the benchmarks (BenchmarkScale…) run the scenarios of the
// scale contract and print one table row each; TestHarnessSmoke checks, at a tiny size in
// `make test`, that the harness measures what it says.
package scalebench
