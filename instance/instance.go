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
}

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

// Alive reports whether the process that wrote the file still runs.
func (in Info) Alive() bool {
	if in.PID <= 0 {
		return false
	}
	err := syscall.Kill(in.PID, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Find returns the herd up running on dir. The error says, for an
// operator, why there is none: no connection file, a stale one, or one
// herd refuses to read.
func Find(dir string) (Info, error) {
	in, err := Read(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return in, fmt.Errorf("no herd up has run on %s (no %s)", dir, Path(dir))
	case err != nil:
		return in, fmt.Errorf("the connection file of %s: %w", dir, err)
	case !in.Alive():
		return in, fmt.Errorf("the herd up of %s (pid %d, started %s) is not running (%s is stale)",
			dir, in.PID, in.StartedAt.Local().Format(time.DateTime), Path(dir))
	}
	return in, nil
}
