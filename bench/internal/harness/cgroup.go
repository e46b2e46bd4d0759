package harness

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// cgroup is a private memory cgroup the benchmark made (or, for
// systemd-run, found): version 2 (memory.max, memory.peak, memory.events)
// or version 1 (memory.limit_in_bytes, memory.max_usage_in_bytes,
// memory.failcnt, memory.oom_control).
type cgroup struct {
	dir  string
	v1   bool
	made bool // made by the benchmark, removed by remove
}

// v1Root is where a cgroup v1 memory hierarchy is mounted.
const v1Root = "/sys/fs/cgroup/memory"

// makeCgroup makes a private cgroup named name with a memory limit of
// limit bytes and no swap beyond it, under the first writable memory
// hierarchy: cgroup v2 (the unified root), else cgroup v1 (a child of the
// memory hierarchy's root, a sibling of the cgroup this process is in,
// whose limits are not touched).
func makeCgroup(name string, limit int64) (*cgroup, error) {
	var why []string
	for _, root := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		c, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
		if err != nil || !strings.Contains(" "+string(c)+" ", " memory") {
			continue
		}
		cg := &cgroup{dir: filepath.Join(root, name)}
		if err := cg.make(limit); err != nil {
			why = append(why, err.Error())
			continue
		}
		return cg, nil
	}
	if _, err := os.Stat(filepath.Join(v1Root, "memory.limit_in_bytes")); err == nil {
		cg := &cgroup{dir: filepath.Join(v1Root, name), v1: true}
		if err := cg.make(limit); err != nil {
			why = append(why, err.Error())
		} else {
			return cg, nil
		}
	}
	if len(why) == 0 {
		return nil, errors.New("no cgroup v2 hierarchy with the memory controller and no cgroup v1 memory hierarchy")
	}
	return nil, errors.New(strings.Join(why, "; "))
}

func (c *cgroup) make(limit int64) error {
	if err := os.Mkdir(c.dir, 0o755); err != nil {
		return fmt.Errorf("make cgroup %s: %w", c.dir, err)
	}
	c.made = true
	l := []byte(strconv.FormatInt(limit, 10))
	if c.v1 {
		if err := os.WriteFile(filepath.Join(c.dir, "memory.limit_in_bytes"), l, 0); err != nil {
			_ = c.remove()
			return fmt.Errorf("set %s/memory.limit_in_bytes: %w", c.dir, err)
		}
		// Memory plus swap at the same limit: swap cannot hide what the
		// process uses. The file is there only with swap accounting on.
		if _, err := os.Stat(filepath.Join(c.dir, "memory.memsw.limit_in_bytes")); err == nil {
			if err := os.WriteFile(filepath.Join(c.dir, "memory.memsw.limit_in_bytes"), l, 0); err != nil {
				_ = c.remove()
				return fmt.Errorf("set %s/memory.memsw.limit_in_bytes: %w", c.dir, err)
			}
		}
		return nil
	}
	if err := os.WriteFile(filepath.Join(c.dir, "memory.max"), l, 0); err != nil {
		_ = c.remove()
		return fmt.Errorf("set %s/memory.max: %w", c.dir, err)
	}
	_ = os.WriteFile(filepath.Join(c.dir, "memory.swap.max"), []byte("0"), 0)
	return nil
}

// add moves process pid into the cgroup.
func (c *cgroup) add(pid int) error {
	return os.WriteFile(filepath.Join(c.dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
}

// readInt reads a file holding one integer.
func (c *cgroup) readInt(file string) (int64, error) {
	b, err := os.ReadFile(filepath.Join(c.dir, file))
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// field reads "key N" from a flat keyed file (memory.events, memory.oom_control).
func (c *cgroup) field(file, key string) (int64, bool) {
	b, err := os.ReadFile(filepath.Join(c.dir, file))
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+" "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// peak is the most memory the cgroup was charged, in bytes.
func (c *cgroup) peak() (int64, error) {
	if c.v1 {
		return c.readInt("memory.max_usage_in_bytes")
	}
	return c.readInt("memory.peak")
}

// oomKills is how many processes the kernel's OOM killer killed in the
// cgroup; known is false when the kernel does not count them (cgroup v1
// before Linux 4.13: then a process killed by SIGKILL tells).
func (c *cgroup) oomKills() (n int64, known bool) {
	if c.v1 {
		return c.field("memory.oom_control", "oom_kill")
	}
	return c.field("memory.events", "oom_kill")
}

// limitHits is how many times the cgroup's usage reached its limit (v1
// memory.failcnt or memory.memsw.failcnt; v2 memory.events "max"): reclaim ran, not necessarily
// an OOM kill.
func (c *cgroup) limitHits() int64 {
	if c.v1 {
		// With swap accounting the memory+swap limit, set equal, is
		// the one reached: its count is memory.memsw.failcnt.
		n, _ := c.readInt("memory.failcnt")
		sw, _ := c.readInt("memory.memsw.failcnt")
		return max(n, sw)
	}
	n, _ := c.field("memory.events", "max")
	return n
}

// remove removes a cgroup the benchmark made: processes still in it are
// moved to the hierarchy's root, then the directory (a cgroup's
// directory is removed with rmdir, its files with it) is removed once the
// kernel lets it go.
func (c *cgroup) remove() error {
	if c == nil || !c.made {
		return nil
	}
	var err error
	for i := 0; i < 50; i++ {
		if b, rerr := os.ReadFile(filepath.Join(c.dir, "cgroup.procs")); rerr == nil {
			for _, p := range strings.Fields(string(b)) {
				_ = os.WriteFile(filepath.Join(filepath.Dir(c.dir), "cgroup.procs"), []byte(p), 0)
			}
		}
		if err = os.Remove(c.dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("remove cgroup %s: %w", c.dir, err)
}
