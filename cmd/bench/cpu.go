package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc CPU times (100 on Linux for every architecture Go
// runs the benchmark on).
const clockTicks = 100

// procCPU is a process's user+system CPU time so far, from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may contain spaces; fields after its closing parenthesis are
	// fixed: state is the 3rd field, utime the 14th, stime the 15th.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * time.Second / clockTicks, nil
}

// machineCPU is the busy CPU time of the whole machine so far, from /proc/stat.
func machineCPU() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var busy int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 7 { // guest times are already counted in user
			break
		}
		busy += n
	}
	return time.Duration(busy) * time.Second / clockTicks
}

// cpuShare measures, over one scenario, how many cores each party used: the answer to "what is
// the bottleneck" on a machine whose cores are shared.
type cpuShare struct {
	pids   map[string]int
	before map[string]time.Duration
	start  time.Time
}

func startCPU(pids map[string]int) *cpuShare {
	c := &cpuShare{pids: pids, before: map[string]time.Duration{}, start: time.Now()}
	for name, pid := range pids {
		if d, err := procCPU(pid); err == nil {
			c.before[name] = d
		}
	}
	c.before["machine"] = machineCPU()
	return c
}

// CPUCores is the cores each party used on average during a scenario.
type CPUCores map[string]float64

func (c *cpuShare) stop() CPUCores {
	el := time.Since(c.start).Seconds()
	out := CPUCores{}
	var ours float64
	for name, pid := range c.pids {
		if d, err := procCPU(pid); err == nil {
			if b, ok := c.before[name]; ok {
				out[name] = (d - b).Seconds() / el
				ours += out[name]
			}
		}
	}
	out["machine"] = (machineCPU() - c.before["machine"]).Seconds() / el
	out["everything else"] = max(out["machine"]-ours, 0)
	return out
}

func (c CPUCores) String() string {
	order := []string{"elasticsearch", "ingest", "search", "archiver", "proxies", "load generator", "everything else", "machine"}
	var parts []string
	for _, k := range order {
		if v, ok := c[k]; ok {
			parts = append(parts, fmt.Sprintf("%s %.2f", k, v))
		}
	}
	return "cores used: " + strings.Join(parts, ", ")
}
