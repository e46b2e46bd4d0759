package archive

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Lake is where archive files live. Keys are slash-separated paths relative
// to the lake's root. Put must be atomic: a reader sees no object or all of
// it, never a prefix, because readers (DuckDB, Spark, replay) glob the lake
// while the archiver writes.
type Lake interface {
	Put(ctx context.Context, key string, data []byte) error
	// Get returns the object's bytes; a missing key is fs.ErrNotExist.
	Get(ctx context.Context, key string) ([]byte, error)
	// List returns every object under prefix, recursively, sorted by key.
	List(ctx context.Context, prefix string) ([]Object, error)
	// Children returns the names of the immediate "directories" under
	// prefix (e.g. "source=1"), sorted.
	Children(ctx context.Context, prefix string) ([]string, error)
	// Delete removes an object; a missing one is not an error.
	Delete(ctx context.Context, key string) error
	String() string
}

// Object is one listed file.
type Object struct {
	Key  string
	Size int64
}

// tempCleaner is implemented by lakes that can leave temporary files
// behind when the process dies mid-write.
type tempCleaner interface {
	cleanTemps(prefix string, olderThan time.Duration) (int, error)
}

// Open returns the lake named by spec: "s3://bucket/prefix" for S3 (with
// endpoint and credentials from s3), anything else a local directory.
func Open(spec string, s3 S3Config) (Lake, error) {
	if strings.HasPrefix(spec, "s3://") {
		u, err := url.Parse(spec)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("lake %q: want s3://bucket/prefix", spec)
		}
		s3.Bucket = u.Host
		s3.Prefix = strings.Trim(u.Path, "/")
		return NewS3(s3)
	}
	if spec == "" {
		return nil, errors.New("lake: empty location; give a directory or s3://bucket/prefix")
	}
	return NewDir(spec), nil
}

// Dir is a lake in a local directory.
type Dir struct {
	root string
	// slowWrite, in tests, pauses half-way through a file so that a test
	// can kill the process mid-write.
	slowWrite time.Duration
}

// NewDir returns a lake rooted at dir (created on first write).
func NewDir(dir string) *Dir { return &Dir{root: dir} }

func (d *Dir) String() string { return d.root }

func (d *Dir) path(key string) string { return filepath.Join(d.root, filepath.FromSlash(key)) }

// Put writes data under a hidden temporary name in the target directory,
// syncs it, and renames it into place, so a crash leaves at worst a hidden
// .tmp file that no *.parquet glob matches.
func (d *Dir) Put(ctx context.Context, key string, data []byte) error {
	dst := d.path(key)
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create lake directory %s: %w", dir, err)
	}
	var nonce [6]byte
	_, _ = rand.Read(nonce[:])
	tmp := filepath.Join(dir, "."+filepath.Base(dst)+"."+hex.EncodeToString(nonce[:])+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	err = func() error {
		if d.slowWrite > 0 {
			half := len(data) / 2
			if _, err := f.Write(data[:half]); err != nil {
				return err
			}
			_ = f.Sync()
			time.Sleep(d.slowWrite)
			data = data[half:]
		}
		if _, err := f.Write(data); err != nil {
			return err
		}
		return f.Sync()
	}()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", dst, err)
	}
	// The rename is durable only once the directory is synced.
	if df, err := os.Open(dir); err == nil {
		_ = df.Sync()
		df.Close()
	}
	return nil
}

// Get reads a file of the lake.
func (d *Dir) Get(ctx context.Context, key string) ([]byte, error) {
	b, err := os.ReadFile(d.path(key))
	if err != nil {
		return nil, fmt.Errorf("read lake file %s: %w", d.path(key), err)
	}
	return b, nil
}

// Delete removes a file of the lake.
func (d *Dir) Delete(ctx context.Context, key string) error {
	if err := os.Remove(d.path(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete lake file %s: %w", d.path(key), err)
	}
	return nil
}

// List walks the directory under prefix; hidden files (temporaries) are
// skipped.
func (d *Dir) List(ctx context.Context, prefix string) ([]Object, error) {
	var out []Object
	base := d.path(prefix)
	err := filepath.WalkDir(base, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			return nil
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(d.root, p)
		if err != nil {
			return err
		}
		out = append(out, Object{Key: filepath.ToSlash(rel), Size: info.Size()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", base, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Children lists the subdirectories of prefix.
func (d *Dir) Children(ctx context.Context, prefix string) ([]string, error) {
	es, err := os.ReadDir(d.path(prefix))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", d.path(prefix), err)
	}
	var out []string
	for _, e := range es {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// cleanTemps removes temporaries a dead process left in the directory of
// prefix. Only one archiver writes a lake, so any temporary older than a
// moment belongs to a process that is gone.
func (d *Dir) cleanTemps(prefix string, olderThan time.Duration) (int, error) {
	dir := d.path(prefix)
	es, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range es {
		if e.IsDir() || !strings.HasPrefix(e.Name(), ".") || !strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) >= olderThan {
			if os.Remove(filepath.Join(dir, e.Name())) == nil {
				n++
			}
		}
	}
	return n, nil
}

// S3Config locates an S3-compatible bucket. Unset fields fall back to the
// usual AWS environment variables.
type S3Config struct {
	Endpoint  string // host[:port] or URL; default $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, else s3.amazonaws.com
	Bucket    string
	Prefix    string // key prefix inside the bucket, without slashes at the ends
	Region    string // default $AWS_REGION, $AWS_DEFAULT_REGION, else us-east-1
	AccessKey string // default $AWS_ACCESS_KEY_ID (then ~/.aws/credentials, then instance role)
	SecretKey string // default $AWS_SECRET_ACCESS_KEY
	Token     string // session token; default $AWS_SESSION_TOKEN
	Insecure  bool   // plain HTTP (also implied by an http:// endpoint)
	PathStyle bool   // bucket in the path rather than the host name (MinIO, most self-hosted stores)
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

// S3 is a lake in an S3-compatible bucket. Objects appear only when their
// upload completes (a single PUT, or a completed multipart upload for large
// files), which gives Put its atomicity.
type S3 struct {
	c      *minio.Client
	bucket string
	prefix string // "" or "prefix/"
}

// NewS3 returns a lake on the bucket.
func NewS3(cfg S3Config) (*S3, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("s3 lake: no bucket")
	}
	if cfg.Endpoint == "" {
		cfg.Endpoint = firstEnv("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
	}
	if cfg.Endpoint == "" {
		cfg.Endpoint = "s3.amazonaws.com"
	}
	if cfg.Region == "" {
		cfg.Region = firstEnv("AWS_REGION", "AWS_DEFAULT_REGION")
	}
	if cfg.Region == "" {
		// Setting a region spares a GetBucketLocation round trip, which
		// several S3-compatible stores do not implement.
		cfg.Region = "us-east-1"
	}
	host := cfg.Endpoint
	secure := !cfg.Insecure
	if strings.Contains(host, "://") {
		u, err := url.Parse(host)
		if err != nil {
			return nil, fmt.Errorf("s3 endpoint %q: %w", cfg.Endpoint, err)
		}
		host = u.Host
		secure = u.Scheme == "https" && !cfg.Insecure
	}
	var creds *credentials.Credentials
	if cfg.AccessKey != "" {
		creds = credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.Token)
	} else {
		creds = credentials.NewChainCredentials([]credentials.Provider{
			&credentials.EnvAWS{}, &credentials.FileAWSCredentials{}, &credentials.IAM{},
		})
	}
	lookup := minio.BucketLookupAuto
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	c, err := minio.New(host, &minio.Options{Creds: creds, Secure: secure, Region: cfg.Region, BucketLookup: lookup})
	if err != nil {
		return nil, fmt.Errorf("s3 client for %s: %w", cfg.Endpoint, err)
	}
	p := strings.Trim(cfg.Prefix, "/")
	if p != "" {
		p += "/"
	}
	return &S3{c: c, bucket: cfg.Bucket, prefix: p}, nil
}

func (s *S3) String() string { return "s3://" + s.bucket + "/" + s.prefix }

// Put uploads data; minio-go switches to a multipart upload for large
// objects, and an object is visible only once the upload completes.
func (s *S3) Put(ctx context.Context, key string, data []byte) error {
	ct := "application/octet-stream"
	if strings.HasSuffix(key, ".json") {
		ct = "application/json"
	}
	_, err := s.c.PutObject(ctx, s.bucket, s.prefix+key, bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{ContentType: ct, SendContentMd5: true})
	if err != nil {
		return fmt.Errorf("upload s3://%s/%s%s: %w", s.bucket, s.prefix, key, err)
	}
	return nil
}

// Get downloads an object.
func (s *S3) Get(ctx context.Context, key string) ([]byte, error) {
	o, err := s.c.GetObject(ctx, s.bucket, s.prefix+key, minio.GetObjectOptions{})
	if err == nil {
		var b []byte
		b, err = io.ReadAll(o)
		o.Close()
		if err == nil {
			return b, nil
		}
	}
	if minio.ToErrorResponse(err).Code == minio.NoSuchKey {
		err = fs.ErrNotExist
	}
	return nil, fmt.Errorf("download s3://%s/%s%s: %w", s.bucket, s.prefix, key, err)
}

// Delete removes an object (S3 answers a missing key with success).
func (s *S3) Delete(ctx context.Context, key string) error {
	if err := s.c.RemoveObject(ctx, s.bucket, s.prefix+key, minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("delete s3://%s/%s%s: %w", s.bucket, s.prefix, key, err)
	}
	return nil
}

// List lists every object under prefix.
func (s *S3) List(ctx context.Context, prefix string) ([]Object, error) {
	var out []Object
	for o := range s.c.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + prefix, Recursive: true}) {
		if o.Err != nil {
			return nil, fmt.Errorf("list s3://%s/%s%s: %w", s.bucket, s.prefix, prefix, o.Err)
		}
		out = append(out, Object{Key: strings.TrimPrefix(o.Key, s.prefix), Size: o.Size})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Children lists the common prefixes one level under prefix.
func (s *S3) Children(ctx context.Context, prefix string) ([]string, error) {
	var out []string
	full := s.prefix + prefix
	for o := range s.c.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: full}) {
		if o.Err != nil {
			return nil, fmt.Errorf("list s3://%s/%s: %w", s.bucket, full, o.Err)
		}
		if strings.HasSuffix(o.Key, "/") {
			out = append(out, path.Base(strings.TrimSuffix(o.Key, "/")))
		}
	}
	sort.Strings(out)
	return out, nil
}
