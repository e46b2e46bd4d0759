// Package instance is how herd's commands find the herd up they belong to:
// herd up writes a connection file into its data directory while it runs,
// and every other command reads it when no flag or variable says otherwise.
package instance

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/herdhq/herd/internal/secrets"
)

// FileName is the connection file's name in the data directory.
const FileName = "herd.json"

// Info is what herd up writes: where its parts listen and where the
// credentials to reach them are. The database URL is the one herd up uses
// (for the private cluster it names its password file by passfile=; a URL
// the operator gave may hold a password), so the file is mode 0600 in a
// 0700 data directory, like the credentials beside it.
type Info struct {
	PID            int       `json:"pid"`
	StartedAt      time.Time `json:"started_at"`
	DataDir        string    `json:"data_dir"`
	DatabaseURL    string    `json:"database_url"`
	NATSURL        string    `json:"nats_url,omitempty"` // empty: NATS accepts in-process clients only
	NATSTokenFile  string    `json:"nats_token_file,omitempty"`
	AdminURL       string    `json:"admin_url,omitempty"`
	AdminTokenFile string    `json:"admin_token_file,omitempty"`
	Lake           string    `json:"lake"`
	Stream         string    `json:"stream"`
	SubjectPrefix  string    `json:"subject_prefix"`
	SourcesBucket  string    `json:"sources_bucket"`
	// Setup is what herd up's setup checks found at its start, so that
	// herd doctor reports on the configuration herd up runs with.
	Setup []Check `json:"setup,omitempty"`
}

// Check is one result of herd up's setup checks (doctor.Result).
type Check struct {
	Level   string `json:"level"` // ok, warn or FAIL
	Name    string `json:"name"`
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"`
}

// ErrNone and ErrStale are wrapped by Find's error when no herd up has
// written a connection file, and when the one there is stale.
var (
	ErrNone  = errors.New("no herd up has run")
	ErrStale = errors.New("is stale")
)

// Path is the connection file of the data directory dir.
func Path(dir string) string { return filepath.Join(dir, FileName) }

// Write replaces dir's connection file with in, mode 0600, atomically: a
// reader sees the old file or the new one, never half of one.
func Write(dir string, in Info) error {
	b, err := json.MarshalIndent(in, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+FileName+"-*")
	if err != nil {
		return fmt.Errorf("write the connection file in %s: %w", dir, err)
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("write the connection file in %s: %w", dir, err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("write the connection file in %s: %w", dir, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write the connection file in %s: %w", dir, err)
	}
	if err := os.Rename(f.Name(), Path(dir)); err != nil {
		return fmt.Errorf("write the connection file in %s: %w", dir, err)
	}
	return nil
}

// Read returns dir's connection file. It refuses a file another user owns
// or others may read (it could point herd's credentials at their server),
// as herd refuses such a token file. A missing file is an error wrapping
// fs.ErrNotExist.
func Read(dir string) (Info, error) {
	var in Info
	p := Path(dir)
	if _, err := os.Lstat(p); err != nil {
		return in, err
	}
	if err := secrets.CheckFile(p); err != nil {
		return in, err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return in, err
	}
	if err := json.Unmarshal(b, &in); err != nil {
		return in, fmt.Errorf("%s: %w (delete it; herd up writes it again at its next start)", p, err)
	}
	return in, nil
}

// Remove deletes dir's connection file when it is the one process pid
// wrote, so that a herd up stopping late does not remove its successor's.
func Remove(dir string, pid int) error {
	in, err := Read(dir)
	if err != nil || in.PID != pid {
		return nil
	}
	if err := os.Remove(Path(dir)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// LockName is the lock file herd up holds, with an exclusive flock, for as
// long as it runs on a data directory. The lock, not a pid, says whether a
// herd up runs: a pid may be reused, and in a container herd up is pid 1
// again after every restart. The kernel drops the lock when the process
// ends, however it ends.
const LockName = "herd.lock"

// ErrRunning is the error of Lock when another herd up holds dir's lock.
var ErrRunning = errors.New("herd up already runs")

// Lock takes dir's lock for a herd up, without waiting: it fails wrapping
// ErrRunning when another process holds it. The lock lasts until the
// returned file is closed or the process ends.
func Lock(dir string) (*os.File, error) {
	p := filepath.Join(dir, LockName)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open the lock %s: %w", p, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w on %s (it holds %s): stop it first, or give another --data-dir", ErrRunning, dir, p)
		}
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	return f, nil
}

// Held reports whether a process holds dir's lock, that is whether a herd
// up runs on dir.
func Held(dir string) bool {
	f, err := os.Open(filepath.Join(dir, LockName))
	if err != nil {
		return false
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	if err == nil {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		return false
	}
	return errors.Is(err, syscall.EWOULDBLOCK)
}

// Find returns the herd up running on dir: its connection file, when a
// process holds dir's lock. The error says, for an operator, why there is
// none: no connection file, a stale one, or one herd refuses to read.
func Find(dir string) (Info, error) {
	in, err := Read(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return in, fmt.Errorf("%w on %s (no %s)", ErrNone, dir, Path(dir))
	case err != nil:
		// A live herd up's file that another user owns (or we may not
		// read) is not to be deleted: the command runs as the wrong user.
		if st, serr := os.Stat(Path(dir)); serr == nil && Held(dir) {
			if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() {
				return in, fmt.Errorf("the herd up running on %s runs as uid %d, which owns %s: run this command as that user (herd reads no connection file another user owns)",
					dir, sys.Uid, Path(dir))
			}
		}
		if errors.Is(err, fs.ErrPermission) {
			return in, fmt.Errorf("the connection file of %s: %w; run this command as the user herd up runs as", dir, err)
		}
		return in, fmt.Errorf("the connection file of %s: %w", dir, err)
	case !Held(dir):
		return in, fmt.Errorf("the herd up of %s (pid %d, started %s) is not running (%s %w: nothing holds %s)",
			dir, in.PID, in.StartedAt.Local().Format(time.DateTime), Path(dir), ErrStale, filepath.Join(dir, LockName))
	}
	return in, nil
}
