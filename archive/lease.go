package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
)

// LeaseName is the lake-level file in which a running archiver says that
// it writes the lake: renewed every LeaseRenew, removed when it stops.
// Commands that change the lake's files directly (Erase, through herd
// privacy delete without an archiver to ask) refuse while it is fresh.
const LeaseName = "_archiver.json"

// LeaseRenew is how often a running archiver renews its lease; a lease not
// renewed for LeaseTTL belongs to an archiver that is gone.
const (
	LeaseRenew = 20 * time.Second
	LeaseTTL   = 3 * LeaseRenew
)

// Lease is the content of LeaseName.
type Lease struct {
	Host    string    `json:"host"`
	PID     int       `json:"pid"`
	Subject string    `json:"erase_subject"`
	Renewed time.Time `json:"renewed"`
}

func (a *Archiver) renewLease(ctx context.Context, now time.Time) {
	host, _ := os.Hostname()
	b, _ := json.Marshal(Lease{Host: host, PID: os.Getpid(), Subject: EraseSubject(a.cfg.Stream), Renewed: now.UTC()})
	if err := a.lake.Put(ctx, LeaseName, b); err != nil {
		a.m.errors.WithLabelValues(opLease).Inc()
		a.log.Warn("renew the archiver's lease on the lake", "file", LeaseName, "err", err)
	}
}

func (a *Archiver) dropLease(ctx context.Context) {
	if err := a.lake.Delete(ctx, LeaseName); err != nil {
		a.m.errors.WithLabelValues(opLease).Inc()
		a.log.Warn("remove the archiver's lease on the lake", "file", LeaseName, "err", err)
	}
}

// ActiveArchiver returns the lease of an archiver that writes the lake
// now (renewed within LeaseTTL), or nil.
func ActiveArchiver(ctx context.Context, lake Lake) (*Lease, error) {
	b, err := lake.Get(ctx, LeaseName)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s of the lake: %w", LeaseName, err)
	}
	var l Lease
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("parse %s of the lake: %w", LeaseName, err)
	}
	if time.Since(l.Renewed) > LeaseTTL {
		return nil, nil
	}
	return &l, nil
}

// ErrArchiverRunning is returned by the functions that write the lake
// directly (EraseDirect, Compact, Repair, RecordHourGaps) when an archiver
// holds a fresh lease on it.
type ErrArchiverRunning struct {
	Lease Lease
	Op    string // "compact", "repair", "record gaps"; empty: erase
}

func (e *ErrArchiverRunning) Error() string {
	if e.Op != "" {
		return fmt.Sprintf("cannot %s: an archiver (host %s, pid %d) writes this lake (lease %s renewed %s) and keeps its partitions' manifests in memory, "+
			"so a second writer's files would be lost; stop the archiver first, or let it do the work: it compacts closed partitions itself, "+
			"and with Postgres (herd up, herd archive --database-url) it repairs recorded gaps itself",
			e.Op, e.Lease.Host, e.Lease.PID, LeaseName, e.Lease.Renewed.Format(time.RFC3339))
	}
	return fmt.Sprintf("an archiver (host %s, pid %d) writes this lake (lease renewed %s) but did not answer on NATS subject %s: "+
		"give the NATS URL it uses (beside herd up, --data-dir finds it) so that it erases between its own writes, or stop it first",
		e.Lease.Host, e.Lease.PID, e.Lease.Renewed.Format(time.RFC3339), e.Lease.Subject)
}

// EraseDirect is Erase for a lake no archiver writes: it refuses
// (*ErrArchiverRunning) while an archiver's lease is fresh, since the
// archiver would write back what Erase removed.
func EraseDirect(ctx context.Context, lake Lake, opt EraseOptions) (EraseResult, error) {
	if err := refuseBesideArchiver(ctx, lake, ""); err != nil {
		return EraseResult{}, err
	}
	return Erase(ctx, lake, opt)
}

// refuseBesideArchiver returns *ErrArchiverRunning while an archiver's
// lease on the lake is fresh.
func refuseBesideArchiver(ctx context.Context, lake Lake, op string) error {
	l, err := ActiveArchiver(ctx, lake)
	if err != nil {
		return err
	}
	if l != nil {
		return &ErrArchiverRunning{Lease: *l, Op: op}
	}
	return nil
}
