// Package exepages hands back to the kernel the pages of the running
// executable that only its start-up needed.
//
// A Go binary's package initialisers, flag and configuration parsing and
// the opening of its stores touch code and read-only data all over the
// executable, and those pages stay mapped, counted in the process's RSS, for
// as long as the kernel has no reason to reclaim them. `cascade run`'s 101 MB
// executable kept about 55 MiB resident when idle of which its steady state
// (scrapes, rule evaluations, serving) needs about 22 (BENCHMARKS.md).
// Release, called once start-up is over, is to the executable what
// debug.FreeOSMemory is to the heap.
package exepages
