package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Memory is herd up's resident memory when idle and what the run under a
// cgroup memory limit found.
type Memory struct {
	// IdleRSSMB is herd up's VmRSS a few seconds after a start, with
	// nothing offered.
	IdleRSSMB float64 `json:"idle_rss_mb"`
	// Cgroup is the phase under a cgroup memory limit; nil when the
	// machine offers no way to set one (Skipped says why).
	Cgroup  *CgroupRun `json:"cgroup,omitempty"`
	Skipped string     `json:"cgroup_skipped,omitempty"`
}

// CgroupRun is the heaviest closed loop offered to herd up inside a cgroup
// whose memory is limited.
type CgroupRun struct {
	How        string  `json:"how"` // systemd-run or the cgroup directory
	LimitMB    float64 `json:"limit_mb"`
	PeakMB     float64 `json:"peak_mb"` // memory.peak, or herd up's VmHWM
	OOMKills   int64   `json:"oom_kills"`
	Survived   bool    `json:"survived"`
	Accepted   int64   `json:"accepted"`
	Lost       int64   `json:"lost"`
	EventsPerS float64 `json:"events_per_s"`
}

// cgroupLimit is the memory limit of the cgroup phase.
const cgroupLimit = 512 << 20

// idleRSS records herd up's resident memory once its start has settled
// (herd up returns its start-up garbage to the OS after 3 s).
func (b *bench) idleRSS(ctx context.Context) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(5 * time.Second):
	}
	if v, err := procField(b.herd.pid(), "VmRSS:"); err == nil {
		b.rep.Memory.IdleRSSMB = float64(v) / (1 << 20)
	}
}

// cgroupWay finds how this machine can limit a process's memory: a cgroup
// v2 hierarchy with the memory controller that this process may write (a
// private directory is made in it), or else systemd-run --scope when
// systemd runs. It returns the directory to make, or "" for systemd-run,
// or an error saying why neither is there.
func cgroupWay() (dir string, err error) {
	for _, root := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		c, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
		if err != nil || !strings.Contains(" "+string(c)+" ", " memory") {
			continue
		}
		d := filepath.Join(root, "herdbench-"+strconv.Itoa(os.Getpid()))
		if err := os.Mkdir(d, 0o755); err != nil {
			continue
		}
		if err := os.WriteFile(filepath.Join(d, "memory.max"), []byte(strconv.Itoa(cgroupLimit)), 0); err != nil {
			os.Remove(d)
			continue
		}
		_ = os.WriteFile(filepath.Join(d, "memory.swap.max"), []byte("0"), 0)
		return d, nil
	}
	if _, err := exec.LookPath("systemd-run"); err == nil {
		out, _ := exec.Command("systemctl", "is-system-running").Output()
		if s := strings.TrimSpace(string(out)); s == "running" || s == "degraded" {
			return "", nil
		}
	}
	return "", errors.New("no writable cgroup v2 hierarchy with the memory controller, and systemd is not running (systemd-run --scope needs it)")
}

// cgroupPhase restarts herd up inside a cgroup limited to 512 MB and
// offers it the heaviest load of the run (the batch closed loop). It
// records the cgroup's OOM kills, whether herd up survived, and (through
// the run's final check) that nothing it accepted was lost.
func (b *bench) cgroupPhase(ctx context.Context) error {
	dir, err := cgroupWay()
	if err != nil {
		b.rep.Memory.Skipped = err.Error()
		b.log.Warn("cgroup phase skipped", "why", err)
		return nil
	}
	if dir != "" {
		defer os.Remove(dir)
	}
	b.settle(ctx, 60*time.Second)
	v, err := metrics(ctx, b.adminURL, acceptedMetric, rowsMetric)
	if err != nil {
		return err
	}
	b.herd.stop()
	b.accepted += v[0]
	b.priorRows += v[1]
	run := &CgroupRun{How: "systemd-run --scope -p MemoryMax=512M", LimitMB: cgroupLimit >> 20}
	if dir != "" {
		run.How = dir
		b.wrap = nil
		b.afterStart = func(pid int) error {
			return os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
		}
	} else {
		b.wrap = []string{"systemd-run", "--scope", "--quiet", "--collect", "-p", "MemoryMax=" + strconv.Itoa(cgroupLimit), "-p", "MemorySwapMax=0"}
	}
	err = b.startHerd(ctx, true)
	b.wrap, b.afterStart = nil, nil
	if err != nil {
		return err
	}
	if err := waitReady(ctx, b.herd, b.adminURL+"/readyz", time.Minute); err != nil {
		return err
	}
	cg := dir
	if cg == "" {
		cg = cgroupOf(b.herd.pid())
	}
	name := "cgroup_batch"
	args := append(b.common(b.collector, "cgroup", b.o.BatchConns*2, b.o.Phase), "--mode", "closed", "--batch", strconv.Itoa(b.o.BatchSize))
	p, err := b.loadPhase(ctx, name, b.herd.pid(), b.adminURL, false, b.o.Phase, args...)
	if err != nil {
		return err
	}
	run.EventsPerS = p.Load.EventsPerSec
	run.PeakMB = p.PeakRSSMB
	if cg != "" {
		if v, err := os.ReadFile(filepath.Join(cg, "memory.peak")); err == nil {
			if n, err := strconv.ParseInt(strings.TrimSpace(string(v)), 10, 64); err == nil {
				run.PeakMB = float64(n) / (1 << 20)
			}
		}
		if v, err := os.ReadFile(filepath.Join(cg, "memory.events")); err == nil {
			for _, line := range strings.Split(string(v), "\n") {
				if n, ok := strings.CutPrefix(line, "oom_kill "); ok {
					run.OOMKills, _ = strconv.ParseInt(n, 10, 64)
				}
			}
		}
	}
	run.Survived = !b.herd.exited()
	b.rep.Memory.Cgroup = run
	if !run.Survived {
		return fmt.Errorf("herd up died under the cgroup's %d MB limit (OOM kills %d); see %s", cgroupLimit>>20, run.OOMKills, filepath.Join(b.logs, b.herd.name+".log"))
	}
	// herd up leaves the cgroup with its restart for the next phase.
	return b.restartHerd(ctx, true)
}

// cgroupOf returns the cgroup v2 directory of pid, or "".
func cgroupOf(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			for _, root := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
				d := filepath.Join(root, p)
				if _, err := os.Stat(filepath.Join(d, "memory.events")); err == nil {
					return d
				}
			}
		}
	}
	return ""
}

// procField reads one kB field of /proc/PID/status, in bytes.
func procField(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}
