package systems

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// EtcdVersion is the etcd release the bench builds and measures; the
// module cmd/ocbench-peers/etcdserver pins it (go.mod, go.sum).
const EtcdVersion = "v3.7.3"

// buildTimeout bounds one build (etcd takes about 2 minutes on 2 cores).
const buildTimeout = 15 * time.Minute

// module is the main module's path; FindSource looks for its go.mod.
const module = "github.com/opencluster/opencluster"

// peerDir is the peer module, relative to the source tree.
const peerDir = "cmd/ocbench-peers"

// FindSource returns the OpenCluster source tree that contains dir (the
// working directory, usually), or an error that says what to do.
func FindSource(dir string) (string, error) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		if isSource(d) {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", errors.New("systems: the etcd target builds etcd and its client from the OpenCluster source tree: run the bench inside it, or pass --source DIR")
		}
		d = parent
	}
}

func isSource(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	first, _, _ := strings.Cut(string(b), "\n")
	if strings.TrimSpace(first) != "module "+module {
		return false
	}
	_, err = os.Stat(filepath.Join(dir, peerDir, "go.mod"))
	return err == nil
}

// EnsureEtcd returns the etcd server binary in the cache, building it
// from the Go module proxy first if it is not there (once, ~2 minutes).
func EnsureEtcd(ctx context.Context, cfg Config) (string, error) {
	out := filepath.Join(cfg.CacheDir, "etcd-"+EtcdVersion, "etcd")
	if isExecutable(out) {
		return out, nil
	}
	if cfg.SourceDir == "" {
		return "", errors.New("systems: no source tree to build etcd from (--source)")
	}
	fmt.Fprintf(cfg.Notes, "building etcd %s from the Go module proxy into %s (once; about 2 minutes on 2 cores)\n", EtcdVersion, out)
	err := goBuild(ctx, filepath.Join(cfg.SourceDir, peerDir, "etcdserver"), out, "go.etcd.io/etcd/server/v3", "-mod=readonly")
	return out, err
}

// EnsurePeer returns the peer binary (cmd/ocbench-peers) for the current
// sources, building it first if the cache has none: its name carries a
// hash of every file it is built from.
func EnsurePeer(ctx context.Context, cfg Config) (string, error) {
	if cfg.SourceDir == "" {
		return "", errors.New("systems: no source tree to build the etcd client from (--source)")
	}
	sum, err := peerSourceHash(cfg.SourceDir)
	if err != nil {
		return "", err
	}
	out := filepath.Join(cfg.CacheDir, "ocbench-peers-"+sum, "ocbench-peers")
	if isExecutable(out) {
		return out, nil
	}
	fmt.Fprintf(cfg.Notes, "building the etcd client driver (%s) into %s\n", peerDir, out)
	// -mod=mod: the peer module follows the main module's go.mod through
	// its replace directive, so a new requirement there may need go.sum
	// lines here; the go command adds them (checked against the checksum
	// database) instead of failing.
	if err := goBuild(ctx, filepath.Join(cfg.SourceDir, peerDir), out, ".", "-mod=mod"); err != nil {
		return "", err
	}
	// Builds of other sources that were made over a day ago are dropped
	// (a bench still running starts its peer once per run, so recent
	// ones stay).
	old, _ := filepath.Glob(filepath.Join(cfg.CacheDir, "ocbench-peers-*"))
	for _, d := range old {
		if st, err := os.Stat(d); err == nil && d != filepath.Dir(out) && time.Since(st.ModTime()) > 24*time.Hour {
			os.RemoveAll(d)
		}
	}
	return out, nil
}

// peerSourceHash hashes the files the peer binary is built from: its
// module, and the main module's go.mod, go.sum and internal/bench.
func peerSourceHash(src string) (string, error) {
	var files []string
	for _, pat := range []string{peerDir + "/*.go", peerDir + "/go.mod", peerDir + "/go.sum", "go.mod", "go.sum", "internal/bench/*.go"} {
		m, err := filepath.Glob(filepath.Join(src, pat))
		if err != nil {
			return "", err
		}
		for _, f := range m {
			if !strings.HasSuffix(f, "_test.go") {
				files = append(files, f)
			}
		}
	}
	sort.Strings(files)
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		rel, _ := filepath.Rel(src, f)
		fmt.Fprintf(h, "%s %d\n", rel, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}

// goBuild runs `go build -trimpath -o out pkg` in dir with GOFLAGS=mod, writing to a
// temporary name first so that a failed or concurrent build never leaves
// a broken binary at out.
func goBuild(ctx context.Context, dir, out, pkg, mod string) error {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("systems: building %s needs the Go toolchain on PATH: %w", pkg, err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.tmp-%d", out, os.Getpid())
	ctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, gobin, "build", "-trimpath", "-o", tmp, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS="+mod)
	var log bytes.Buffer
	cmd.Stdout = &log
	cmd.Stderr = &log
	if err := cmd.Run(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("systems: go build %s in %s: %w\n%s", pkg, dir, err, lastLines(&log, 20))
	}
	if err := os.Rename(tmp, out); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

func lastLines(r io.Reader, n int) string {
	var lines []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// ensureRedis returns the redis-server binary, installing Debian's
// redis-server package first if it is missing and the bench runs as root
// (it says so on notes).
func ensureRedis(ctx context.Context, notes io.Writer) (string, error) {
	if bin, err := exec.LookPath("redis-server"); err == nil {
		return bin, nil
	}
	apt, err := exec.LookPath("apt-get")
	if err != nil || os.Geteuid() != 0 {
		return "", errors.New("systems: redis-server not found: install Debian's redis-server package (apt-get install redis-server)")
	}
	fmt.Fprintln(notes, "redis-server not found: installing Debian's redis-server package (apt-get install -y redis-server)")
	install := func() error {
		cmd := exec.CommandContext(ctx, apt, "install", "-y", "-q", "redis-server")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		var log bytes.Buffer
		cmd.Stdout, cmd.Stderr = &log, &log
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("systems: apt-get install redis-server: %w\n%s", err, lastLines(&log, 10))
		}
		return nil
	}
	if err := install(); err != nil {
		// A fresh machine may have no package lists yet.
		upd := exec.CommandContext(ctx, apt, "update", "-q")
		if uerr := upd.Run(); uerr != nil {
			return "", errors.Join(err, fmt.Errorf("systems: apt-get update: %w", uerr))
		}
		if err := install(); err != nil {
			return "", err
		}
	}
	return exec.LookPath("redis-server")
}
