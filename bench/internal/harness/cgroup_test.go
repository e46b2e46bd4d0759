package harness

import (
	"bufio"
	"os"
	"os/exec"
	"strconv"
	"testing"
)

// TestMain lets the test binary serve as a process that holds memory:
// with HERDBENCH_HOLD_MB set, it waits for a line on stdin (its cgroup is
// set by then), touches that many MB and exits.
func TestMain(m *testing.M) {
	if v := os.Getenv("HERDBENCH_HOLD_MB"); v != "" {
		n, _ := strconv.Atoi(v)
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		held := make([][]byte, 0, n)
		for i := 0; i < n; i++ {
			b := make([]byte, 1<<20)
			for j := range b {
				b[j] = byte(j)
			}
			held = append(held, b)
		}
		os.Stdout.WriteString(strconv.Itoa(len(held)) + "\n")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// holdIn runs a process that touches mb MB inside cg and returns its
// Wait error.
func holdIn(t *testing.T, cg *cgroup, mb int) error {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "HERDBENCH_HOLD_MB="+strconv.Itoa(mb), "GOGC=off")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if err := cg.add(cmd.Process.Pid); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("add to %s: %v", cg.dir, err)
	}
	_, _ = in.Write([]byte("go\n"))
	return cmd.Wait()
}

// TestCgroupLimitsMemory makes real private memory cgroups of 64 MB the
// way the benchmark's cgroup phase does (v2 where the machine has it, else
// v1) and checks what the phase reads from them: a process holding 16 MB
// lives and is seen in the peak; one holding 256 MB is OOM-killed and
// counted; the cgroups are gone afterwards.
func TestCgroupLimitsMemory(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("making a cgroup needs root")
	}
	const limit = 64 << 20
	name := "herdbench-test-" + strconv.Itoa(os.Getpid())
	cg, err := makeCgroup(name, limit)
	if err != nil {
		t.Skipf("no cgroup can be made here: %v", err)
	}
	t.Logf("cgroup %s (v1 %v)", cg.dir, cg.v1)
	if err := holdIn(t, cg, 16); err != nil {
		t.Fatalf("a process holding 16 MB under a 64 MB limit: %v", err)
	}
	peak, err := cg.peak()
	if err != nil {
		t.Fatal(err)
	}
	if peak < 16<<20 || peak > limit {
		t.Errorf("peak %d bytes; want between 16 MB and the 64 MB limit", peak)
	}
	if n, _ := cg.oomKills(); n != 0 {
		t.Errorf("%d OOM kills of a process under its limit", n)
	}
	if err := cg.remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cg.dir); !os.IsNotExist(err) {
		t.Fatalf("%s still there after remove: %v", cg.dir, err)
	}

	cg, err = makeCgroup(name+"-oom", limit)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.remove()
	err = holdIn(t, cg, 256)
	if !killedBySIGKILL(err) {
		t.Fatalf("a process holding 256 MB under a 64 MB limit ended with %v; want killed by SIGKILL", err)
	}
	if n, known := cg.oomKills(); known && n < 1 {
		t.Errorf("OOM kills %d after a kill", n)
	}
	// The limit-hit count is informational: this kernel's v1 cgroups
	// were seen to leave memory.failcnt at 0 across an OOM kill.
	t.Logf("limit hits %d", cg.limitHits())
	if peak, err := cg.peak(); err != nil || peak < limit*9/10 {
		t.Errorf("peak %d (%v); want near the limit", peak, err)
	}
	if err := cg.remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cg.dir); !os.IsNotExist(err) {
		t.Fatalf("%s still there after remove: %v", cg.dir, err)
	}
}
