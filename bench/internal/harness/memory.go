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
	"syscall"
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
	How      string  `json:"how"` // systemd-run or the cgroup directory
	LimitMB  float64 `json:"limit_mb"`
	PeakMB   float64 `json:"peak_mb"` // memory.peak, or herd up's VmHWM
	OOMKills int64   `json:"oom_kills"`
	// LimitHits is how often usage reached the limit (v1
	// memory.failcnt, v2 memory.events max): reclaim, not a kill.
	LimitHits  int64   `json:"limit_hits"`
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

// cgroupWay finds how this machine can limit a process's memory: a private
// cgroup made in a writable v2 or v1 memory hierarchy, or else
// systemd-run --scope when systemd runs (then the cgroup is nil). It
// returns an error saying why neither is there.
func cgroupWay() (*cgroup, error) {
	cg, err := makeCgroup("herdbench-"+strconv.Itoa(os.Getpid()), cgroupLimit)
	if err == nil {
		return cg, nil
	}
	if _, lerr := exec.LookPath("systemd-run"); lerr == nil {
		out, _ := exec.Command("systemctl", "is-system-running").Output()
		if s := strings.TrimSpace(string(out)); s == "running" || s == "degraded" {
			return nil, nil
		}
	}
	return nil, fmt.Errorf("no private memory cgroup (%v), and systemd is not running (systemd-run --scope needs it)", err)
}

// cgroupPhase restarts herd up inside a cgroup limited to 512 MB and
// offers it the heaviest load of the run (the batch closed loop). It
// records the cgroup's OOM kills, whether herd up survived, and (through
// the run's final check) that nothing it accepted was lost.
func (b *bench) cgroupPhase(ctx context.Context) error {
	cg, err := cgroupWay()
	if err != nil {
		b.rep.Memory.Skipped = err.Error()
		b.log.Warn("cgroup phase skipped", "why", err)
		return nil
	}
	defer func() {
		if err := cg.remove(); err != nil {
			b.log.Warn("cgroup left behind", "err", err)
		}
	}()
	b.settle(ctx, 60*time.Second)
	v, err := metrics(ctx, b.adminURL, acceptedMetric, rowsMetric)
	if err != nil {
		return err
	}
	b.herd.stop()
	b.accepted += v[0]
	b.priorRows += v[1]
	run := &CgroupRun{How: "systemd-run --scope -p MemoryMax=512M", LimitMB: cgroupLimit >> 20}
	if cg != nil {
		run.How = cg.dir
		if cg.v1 {
			run.How += " (cgroup v1)"
		}
		b.wrap = nil
		// herd up joins the cgroup before it reads its flags: no load
		// reaches it before.
		b.afterStart = cg.add
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
	if cg == nil {
		cg = cgroupOf(b.herd.pid())
	}
	b.log.Info("herd up runs in a memory-limited cgroup", "how", run.How, "limit_mb", run.LimitMB)
	name := "cgroup_batch"
	args := append(b.common(b.collector, "cgroup", b.o.BatchConns*2, b.o.Phase), "--mode", "closed", "--batch", strconv.Itoa(b.o.BatchSize))
	p, err := b.loadPhase(ctx, name, b.herd.pid(), b.adminURL, false, b.o.Phase, args...)
	if err != nil && !b.herd.exited() {
		return err
	}
	if p != nil {
		run.EventsPerS = p.Load.EventsPerSec
		run.PeakMB = p.PeakRSSMB
	}
	if cg != nil {
		if n, err := cg.peak(); err == nil {
			run.PeakMB = float64(n) / (1 << 20)
		}
		run.LimitHits = cg.limitHits()
		if n, ok := cg.oomKills(); ok {
			run.OOMKills = n
		}
	}
	run.Survived = !b.herd.exited()
	if !run.Survived && run.OOMKills == 0 && killedBySIGKILL(b.herd.err) {
		// A kernel that does not count OOM kills: a SIGKILL nobody
		// here sent is one.
		run.OOMKills = 1
	}
	b.rep.Memory.Cgroup = run
	b.log.Info("cgroup phase", "peak_mb", run.PeakMB, "limit_hits", run.LimitHits, "oom_kills", run.OOMKills, "survived", run.Survived, "events_per_s", run.EventsPerS)
	if !run.Survived {
		return fmt.Errorf("herd up died under the cgroup's %d MB limit (OOM kills %d); see %s", cgroupLimit>>20, run.OOMKills, filepath.Join(b.logs, b.herd.name+".log"))
	}
	// herd up leaves the cgroup with its restart for the next phase.
	return b.restartHerd(ctx, true)
}

// killedBySIGKILL says whether a process's Wait error is death by SIGKILL.
func killedBySIGKILL(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// cgroupOf returns the cgroup v2 directory of pid (where systemd-run put
// it), or nil.
func cgroupOf(pid int) *cgroup {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return nil
	}
	for _, line := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			for _, root := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
				d := filepath.Join(root, p)
				if _, err := os.Stat(filepath.Join(d, "memory.events")); err == nil {
					return &cgroup{dir: d}
				}
			}
		}
	}
	return nil
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
