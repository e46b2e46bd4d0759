package harness

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of CPU times in /proc; 100 on every Linux
// architecture Go supports.
const clockTicks = 100

// procStat reads a process's own CPU time and its waited-for children's, in
// seconds, and its parent's pid.
func procStat(pid int) (self, children float64, ppid int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	// The command name may hold spaces and parentheses: fields start after
	// the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): utime is field 14, stime 15, cutime 16, cstime 17.
	if len(f) < 15 {
		return 0, 0, 0, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	num := func(k int) float64 { v, _ := strconv.ParseFloat(f[k-3], 64); return v }
	ppid, _ = strconv.Atoi(f[1])
	return (num(14) + num(15)) / clockTicks, (num(16) + num(17)) / clockTicks, ppid, nil
}

// processCPU returns the CPU seconds pid has used.
func processCPU(pid int) float64 {
	self, _, _, err := procStat(pid)
	if err != nil {
		return 0
	}
	return self
}

// treeCPU returns the CPU seconds of pid and its direct children, counting
// children that already exited (a Postgres backend per connection comes and
// goes) through the parent's waited-for times.
func treeCPU(pid int) float64 {
	self, children, _, err := procStat(pid)
	if err != nil {
		return 0
	}
	total := self + children
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil || p == pid {
			continue
		}
		s, _, pp, err := procStat(p)
		if err == nil && pp == pid {
			total += s
		}
	}
	return total
}

// resetPeakRSS restarts the kernel's peak-RSS count (VmHWM) of pid, so that
// each phase reports its own peak.
func resetPeakRSS(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// peakRSS returns pid's peak resident memory in bytes since the last reset.
func peakRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse VmHWM of %d: %w", pid, err)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("no VmHWM in /proc/" + strconv.Itoa(pid) + "/status")
}

// postmasterPID reads the pid of the cluster's server from its data directory.
func postmasterPID(dataDir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("read the Postgres server's pid: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strconv.Atoi(strings.TrimSpace(line))
}
