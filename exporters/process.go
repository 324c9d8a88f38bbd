package exporters

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/procfs"
)

// NewProcessCollector returns the standard process_* series of the
// exporter's own process: CPU, memory, file descriptors and start time,
// under the names client_golang's process collector gives them, without its
// process_network_{receive,transmit}_bytes_total. Those are the counters of
// the whole network namespace, not of the process, and rendering
// /proc/self/net/netstat for them cost the kernel more than the rest of a
// scrape of 1,000 nodes together. The start time is read once.
func NewProcessCollector() prometheus.Collector {
	c := &processCollector{}
	if self, err := procfs.Self(); err == nil {
		c.proc = &self
		if stat, err := self.Stat(); err == nil {
			if start, err := stat.StartTime(); err == nil {
				c.startTime = start
			}
		}
	}
	return c
}

type processCollector struct {
	proc      *procfs.Proc // nil where /proc cannot be read: no series
	startTime float64
}

var (
	processCPUDesc = prometheus.NewDesc("process_cpu_seconds_total",
		"User and system CPU time the process has used, in seconds.", nil, nil)
	processOpenFDsDesc = prometheus.NewDesc("process_open_fds",
		"File descriptors the process has open.", nil, nil)
	processMaxFDsDesc = prometheus.NewDesc("process_max_fds",
		"The process's limit of open file descriptors.", nil, nil)
	processVirtualDesc = prometheus.NewDesc("process_virtual_memory_bytes",
		"Size of the process's virtual memory, in bytes.", nil, nil)
	processVirtualMaxDesc = prometheus.NewDesc("process_virtual_memory_max_bytes",
		"The process's limit of virtual memory, in bytes.", nil, nil)
	processResidentDesc = prometheus.NewDesc("process_resident_memory_bytes",
		"Resident memory of the process (its own and mapped files), in bytes.", nil, nil)
	processStartDesc = prometheus.NewDesc("process_start_time_seconds",
		"When the process started, as a Unix time.", nil, nil)
)

func (c *processCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{processCPUDesc, processOpenFDsDesc, processMaxFDsDesc,
		processVirtualDesc, processVirtualMaxDesc, processResidentDesc, processStartDesc} {
		ch <- d
	}
}

// Collect sends what it can read; a file of /proc that cannot be read
// leaves out its series, as client_golang's collector does by default.
func (c *processCollector) Collect(ch chan<- prometheus.Metric) {
	if c.proc == nil {
		return
	}
	if stat, err := c.proc.Stat(); err == nil {
		ch <- prometheus.MustNewConstMetric(processCPUDesc, prometheus.CounterValue, stat.CPUTime())
		ch <- prometheus.MustNewConstMetric(processVirtualDesc, prometheus.GaugeValue, float64(stat.VirtualMemory()))
		ch <- prometheus.MustNewConstMetric(processResidentDesc, prometheus.GaugeValue, float64(stat.ResidentMemory()))
	}
	if c.startTime > 0 {
		ch <- prometheus.MustNewConstMetric(processStartDesc, prometheus.GaugeValue, c.startTime)
	}
	if fds, err := c.proc.FileDescriptorsLen(); err == nil {
		ch <- prometheus.MustNewConstMetric(processOpenFDsDesc, prometheus.GaugeValue, float64(fds))
	}
	if limits, err := c.proc.Limits(); err == nil {
		ch <- prometheus.MustNewConstMetric(processMaxFDsDesc, prometheus.GaugeValue, float64(limits.OpenFiles))
		ch <- prometheus.MustNewConstMetric(processVirtualMaxDesc, prometheus.GaugeValue, float64(limits.AddressSpace))
	}
}
