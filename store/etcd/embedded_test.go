package etcd_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthd/berth/store/etcd"
)

// openDir lets nobody reach dir: its parents (up to the temp dir) become
// 0755, so that only the store's own modes keep other users out.
func openDir(t *testing.T, dir string) {
	t.Helper()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// TestEmbeddedRefusesOtherUsers: an unprivileged user cannot read the
// embedded store's credentials, and the server refuses every connection
// without them (plain, or TLS without the client certificate) for reads
// and writes alike, as etcdctl run by nobody shows. Root, with the files,
// gets in: the refusals are about the certificate.
func TestEmbeddedRefusesOtherUsers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root, to run etcdctl as nobody")
	}
	etcdctl, err := exec.LookPath("etcdctl")
	if err != nil {
		t.Fatal("no etcdctl: install Debian's etcd-client")
	}
	base := t.TempDir()
	openDir(t, base)
	dir := filepath.Join(base, "store")
	st, err := etcd.Embedded(t.Context(), etcd.EmbeddedConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Put(t.Context(), "/berth/secret", []byte("routing")); err != nil {
		t.Fatal(err)
	}
	ep, err := os.ReadFile(filepath.Join(dir, "endpoint"))
	if err != nil {
		t.Fatal(err)
	}
	endpoint := strings.TrimSpace(string(ep))
	if !strings.HasPrefix(endpoint, "https://127.0.0.1:") {
		t.Fatalf("endpoint %q: want https on 127.0.0.1", endpoint)
	}
	plain := "http://" + strings.TrimPrefix(endpoint, "https://")
	tlsDir := filepath.Join(dir, "tls")

	for _, tc := range []struct {
		path string
		mode fs.FileMode
	}{
		{dir, 0o700 | fs.ModeDir}, {tlsDir, 0o700 | fs.ModeDir},
		{filepath.Join(tlsDir, "ca.key"), 0o600}, {filepath.Join(tlsDir, "server.key"), 0o600},
		{filepath.Join(tlsDir, "client.key"), 0o600},
	} {
		fi, err := os.Stat(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != tc.mode || fi.Sys().(*syscall.Stat_t).Uid != 0 {
			t.Errorf("%s: mode %s uid %d, want %s owned by root", tc.path, fi.Mode(), fi.Sys().(*syscall.Stat_t).Uid, tc.mode)
		}
	}

	ctl := func(args ...string) []string {
		return append([]string{etcdctl, "--dial-timeout=2s", "--command-timeout=3s"}, args...)
	}
	asNobody := func(args ...string) []string { return append([]string{"runuser", "-u", "nobody", "--"}, args...) }
	withCerts := []string{"--endpoints=" + endpoint, "--cacert=" + filepath.Join(tlsDir, "ca.crt"),
		"--cert=" + filepath.Join(tlsDir, "client.crt"), "--key=" + filepath.Join(tlsDir, "client.key")}
	for _, tc := range []struct {
		name string
		argv []string
		ok   bool
		want string // in the output
	}{
		{"nobody reads the client key", asNobody("cat", filepath.Join(tlsDir, "client.key")), false, "Permission denied"},
		{"nobody reads the CA key", asNobody("cat", filepath.Join(tlsDir, "ca.key")), false, "Permission denied"},
		{"nobody lists the store dir", asNobody("ls", dir), false, "Permission denied"},
		{"nobody uses the files", asNobody(ctl(append(withCerts, "get", "/berth/secret")...)...), false, "permission denied"},
		{"nobody lists over plain gRPC", asNobody(ctl("--endpoints="+plain, "get", "--prefix", "/")...), false, ""},
		{"nobody lists over TLS without a certificate", asNobody(ctl("--endpoints="+endpoint, "--insecure-skip-tls-verify", "get", "--prefix", "/")...), false, ""},
		{"nobody puts over TLS without a certificate", asNobody(ctl("--endpoints="+endpoint, "--insecure-skip-tls-verify", "put", "/berth/secret", "evil")...), false, ""},
		{"nobody puts over plain gRPC", asNobody(ctl("--endpoints="+plain, "put", "/berth/secret", "evil")...), false, ""},
		{"root without a certificate", ctl("--endpoints="+endpoint, "--cacert="+filepath.Join(tlsDir, "ca.crt"), "get", "--prefix", "/"), false, ""},
		{"root with the certificate", ctl(append(withCerts, "get", "/berth/secret")...), true, "routing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.CommandContext(t.Context(), tc.argv[0], tc.argv[1:]...).CombinedOutput()
			if tc.ok != (err == nil) {
				t.Fatalf("%v: err %v, want success %v:\n%s", tc.argv, err, tc.ok, out)
			}
			t.Logf("%s", out)
			if !strings.Contains(string(out), tc.want) || (!tc.ok && strings.Contains(string(out), "routing")) {
				t.Fatalf("%v: output lacks %q or shows the value:\n%s", tc.argv, tc.want, out)
			}
		})
	}

	// Why etcdctl failed: the server ends a TLS session that brings no
	// client certificate, and does not speak plain HTTP at all.
	host := strings.TrimPrefix(endpoint, "https://")
	t.Run("TLS without a client certificate is refused", func(t *testing.T) {
		conn, err := tls.Dial("tcp", host, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
		if err == nil {
			conn.SetDeadline(time.Now().Add(3 * time.Second))
			_, err = conn.Read(make([]byte, 1))
			conn.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "certificate required") {
			t.Fatalf("handshake without a certificate: %v, want the server's certificate required alert", err)
		}
	})
	t.Run("plain HTTP is refused", func(t *testing.T) {
		resp, err := http.Get(plain + "/version")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Fatalf("plain HTTP answered: %s", body)
			}
			t.Logf("plain HTTP: %s %s", resp.Status, body)
		}
	})
	if kv, err := st.Get(t.Context(), "/berth/secret"); err != nil || string(kv.Value) != "routing" {
		t.Fatalf("after the attempts: %+v, %v", kv, err)
	}
}

// asUser runs this test binary as uid:gid (no supplementary groups) in
// the child mode of TestMain: it opens the embedded store in dir (joining
// only, or also serving an existing one) and reads /berth/secret. It
// returns what the child printed: "value: ..." or the error.
func asUser(t *testing.T, bin, dir string, uid, gid uint32, joinOnly bool) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), envChildDir+"="+dir, envChildJoinOnly+"="+strconv.FormatBool(joinOnly))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the child took %s", d)
	}
	return string(out)
}

// Environment of asUser's child.
const (
	envChildDir      = "BERTH_ETCDTEST_CHILD_DIR"
	envChildJoinOnly = "BERTH_ETCDTEST_CHILD_JOINONLY"
)

// storeChild is asUser's child.
func storeChild(dir string) int {
	ctx := context.Background()
	st, err := etcd.Embedded(ctx, etcd.EmbeddedConfig{Dir: dir, MustExist: true, JoinOnly: os.Getenv(envChildJoinOnly) == "true"})
	if err != nil {
		fmt.Println(err)
		return 0
	}
	defer st.Close()
	kv, err := st.Get(ctx, "/berth/secret")
	if err != nil {
		fmt.Println(err)
		return 0
	}
	fmt.Printf("value: %s\n", kv.Value)
	return 0
}

// testBinary copies this test binary where any user may run it.
func testBinary(t *testing.T, dir string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "etcd.test")
	if data, err := os.ReadFile(self); err != nil || os.WriteFile(bin, data, 0o755) != nil {
		t.Fatalf("copy %s: %v", self, err)
	}
	return bin
}

// TestEmbeddedNoAccessError: a process that may not read the store's
// directory gets ErrNoAccess naming the file and what to do, not a new
// store or a hang (a child process as nobody).
func TestEmbeddedNoAccessError(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root, to run a child as nobody")
	}
	base := t.TempDir()
	openDir(t, base)
	dir := filepath.Join(base, "store")
	st, err := etcd.Embedded(t.Context(), etcd.EmbeddedConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	bin := testBinary(t, base)
	for _, joinOnly := range []bool{false, true} {
		out := asUser(t, bin, dir, 65534, 65534, joinOnly)
		if !strings.Contains(out, "no access to the embedded store") || !strings.Contains(out, dir+"/") ||
			!strings.Contains(out, "run the command as root") {
			t.Fatalf("join only %v: the error does not say which file and what to do:\n%s", joinOnly, out)
		}
		t.Logf("join only %v: %s", joinOnly, out)
	}
}

// TestEmbeddedGroup: with Group, the members of that group may use the
// store (they read the client certificate), others still may not, and the
// server's and CA's keys stay private; a server started without Group
// closes the store to the group again.
func TestEmbeddedGroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root, to run children as other users")
	}
	const nobody, nogroup, other = 65534, 65534, 1 // other: a group nobody is not in here
	base := t.TempDir()
	openDir(t, base)
	dir := filepath.Join(base, "store")
	st, err := etcd.Embedded(t.Context(), etcd.EmbeddedConfig{Dir: dir, Group: strconv.Itoa(nogroup)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(t.Context(), "/berth/secret", []byte("routing")); err != nil {
		t.Fatal(err)
	}
	tlsDir := filepath.Join(dir, "tls")
	for _, tc := range []struct {
		path string
		mode fs.FileMode
		gid  uint32
	}{
		{dir, 0o750 | fs.ModeDir, nogroup}, {tlsDir, 0o750 | fs.ModeDir, nogroup},
		{filepath.Join(tlsDir, "client.key"), 0o640, nogroup}, {filepath.Join(tlsDir, "client.crt"), 0o640, nogroup},
		{filepath.Join(tlsDir, "server.key"), 0o600, 0}, {filepath.Join(tlsDir, "ca.key"), 0o600, 0},
		{filepath.Join(dir, "data"), 0o700 | fs.ModeDir, 0},
	} {
		fi, err := os.Stat(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != tc.mode || fi.Sys().(*syscall.Stat_t).Gid != tc.gid {
			t.Errorf("%s: mode %s gid %d, want %s gid %d", tc.path, fi.Mode(), fi.Sys().(*syscall.Stat_t).Gid, tc.mode, tc.gid)
		}
	}
	bin := testBinary(t, base)
	if out := asUser(t, bin, dir, nobody, nogroup, true); !strings.Contains(out, "value: routing") {
		t.Fatalf("a member of the group cannot use the store:\n%s", out)
	}
	out := asUser(t, bin, dir, nobody, other, true)
	if !strings.Contains(out, "no access to the embedded store") || !strings.Contains(out, "or as a member of group") {
		t.Fatalf("a user outside the group: want an error naming the group:\n%s", out)
	}
	t.Log(out)

	st.Close()
	st, err = etcd.Embedded(t.Context(), etcd.EmbeddedConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if out := asUser(t, bin, dir, nobody, nogroup, true); !strings.Contains(out, "no access to the embedded store") {
		t.Fatalf("the group still gets in after a start without Group:\n%s", out)
	}
}

// TestEmbeddedStableAddress: a restarted server listens where the last one
// did, so a client that joined before the restart (a sidecar) carries on:
// its watch resumes and delivers what is written after the restart. A port
// taken by another program is refused, naming the endpoint file.
func TestEmbeddedStableAddress(t *testing.T) {
	dir := t.TempDir()
	server, err := etcd.Embedded(t.Context(), etcd.EmbeddedConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	epPath := filepath.Join(dir, "endpoint")
	first, err := os.ReadFile(epPath)
	if err != nil {
		t.Fatal(err)
	}
	joined, err := etcd.Embedded(t.Context(), etcd.EmbeddedConfig{Dir: dir, MustExist: true})
	if err != nil {
		t.Fatal(err)
	}
	defer joined.Close()
	rev, err := joined.Put(t.Context(), "/w/before", []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	watch := joined.Watch(t.Context(), "/w/", rev)

	start := time.Now()
	server.Close()
	t.Logf("stopped in %s", time.Since(start))
	server, err = etcd.Embedded(t.Context(), etcd.EmbeddedConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("restarted after %s", time.Since(start))
	if again, _ := os.ReadFile(epPath); string(again) != string(first) {
		t.Fatalf("address changed across a restart: %q, then %q", first, again)
	}
	if _, err := server.Put(t.Context(), "/w/after", []byte("2")); err != nil {
		t.Fatal(err)
	}
	select {
	case resp, ok := <-watch:
		if !ok || resp.Err != nil || len(resp.Events) != 1 || resp.Events[0].KV.Key != "/w/after" {
			t.Fatalf("joined watch after the restart: %+v (open %v)", resp, ok)
		}
		t.Logf("watch resumed %s after the stop", time.Since(start))
	case <-time.After(30 * time.Second):
		t.Fatal("the joined client's watch did not resume after the restart")
	}
	if kv, err := joined.Get(t.Context(), "/w/after"); err != nil || string(kv.Value) != "2" {
		t.Fatalf("joined client after the restart: %+v, %v", kv, err)
	}
	server.Close()

	// Someone else takes the port while the server is down.
	ln, err := net.Listen("tcp", strings.TrimPrefix(strings.TrimSpace(string(first)), "https://"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = etcd.Embedded(t.Context(), etcd.EmbeddedConfig{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "taken by another program") || !strings.Contains(err.Error(), epPath) {
		t.Fatalf("start on a taken port: %v; want an error naming %s", err, epPath)
	}
}
