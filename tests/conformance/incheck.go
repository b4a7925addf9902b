// incheck compares the process environment inside a container with the
// config.json next to it and prints one TAP line per aspect.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/syndtr/gocapability/capability"
	"golang.org/x/sys/unix"
)

type mountInfo struct{ point, fstype, source string }

func mounts() ([]mountInfo, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mountInfo
	s := bufio.NewScanner(f)
	for s.Scan() {
		parts := strings.SplitN(s.Text(), " - ", 2)
		pre := strings.Fields(parts[0])
		post := strings.Fields(parts[1])
		out = append(out, mountInfo{point: pre[4], fstype: post[0], source: post[1]})
	}
	return out, s.Err()
}

func writable(dir string) bool {
	f, err := os.CreateTemp(dir, "Test")
	if err != nil {
		return false
	}
	f.Close()
	os.Remove(f.Name())
	return true
}

var rlimits = map[string]int{
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_CPU": unix.RLIMIT_CPU,
	"RLIMIT_DATA": unix.RLIMIT_DATA, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK, "RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE,
	"RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO, "RLIMIT_RTTIME": unix.RLIMIT_RTTIME, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_STACK": unix.RLIMIT_STACK,
}

func main() {
	raw, err := os.ReadFile("/config.json")
	if err != nil {
		fmt.Println("Bail out! read /config.json:", err)
		os.Exit(1)
	}
	var spec rspec.Spec
	if err := json.Unmarshal(raw, &spec); err != nil {
		fmt.Println("Bail out! parse /config.json:", err)
		os.Exit(1)
	}
	if spec.Process == nil {
		spec.Process = &rspec.Process{}
	}
	if spec.Linux == nil {
		spec.Linux = &rspec.Linux{}
	}
	checks := []struct {
		name string
		fn   func(*rspec.Spec) error
	}{
		{"root filesystem", checkRoot},
		{"hostname", checkHostname},
		{"process", checkProcess},
		{"mounts", checkMounts},
		{"user", checkUser},
		{"rlimits", checkRlimits},
		{"capabilities", checkCaps},
		{"default symlinks", checkSymlinks},
		{"default file system", checkDefaultFS},
		{"default devices", checkDefaultDevices},
		{"linux devices", checkDevices},
		{"linux process", checkLinuxProcess},
		{"masked paths", checkMasked},
		{"oom score adj", checkOOM},
		{"read only paths", checkReadonly},
		{"sysctls", checkSysctls},
		{"uid mappings", func(s *rspec.Spec) error { return checkIDMap(s.Linux.UIDMappings, "/proc/self/uid_map") }},
		{"gid mappings", func(s *rspec.Spec) error { return checkIDMap(s.Linux.GIDMappings, "/proc/self/gid_map") }},
	}
	fmt.Println("TAP version 13")
	for i, c := range checks {
		if err := c.fn(&spec); err != nil {
			fmt.Printf("not ok %d - %s\n  ---\n  error: %q\n  ...\n", i+1, c.name, err.Error())
		} else {
			fmt.Printf("ok %d - %s\n", i+1, c.name)
		}
	}
	fmt.Printf("1..%d\n", len(checks))
}

func checkRoot(s *rspec.Spec) error {
	if s.Root == nil {
		return nil
	}
	if w := writable("/"); s.Root.Readonly == w {
		return fmt.Errorf("root readonly=%v but writable=%v", s.Root.Readonly, w)
	}
	return nil
}

func checkHostname(s *rspec.Spec) error {
	h, err := os.Hostname()
	if err != nil {
		return err
	}
	if s.Hostname != "" && h != s.Hostname {
		return fmt.Errorf("hostname expected %q, actual %q", s.Hostname, h)
	}
	return nil
}

func checkProcess(s *rspec.Spec) error {
	if s.Process.Cwd != "" {
		cwd, err := os.Getwd()
		if err != nil {
			return err
		}
		if cwd != s.Process.Cwd {
			return fmt.Errorf("cwd expected %q, actual %q", s.Process.Cwd, cwd)
		}
	}
	for _, env := range s.Process.Env {
		kv := strings.SplitN(env, "=", 2)
		if os.Getenv(kv[0]) != kv[1] {
			return fmt.Errorf("env %s expected %q, actual %q", kv[0], kv[1], os.Getenv(kv[0]))
		}
	}
	return nil
}

// Non-bind mounts must exist, in the configured order.
func checkMounts(s *rspec.Spec) error {
	infos, err := mounts()
	if err != nil {
		return err
	}
	j := 0
	for i, m := range s.Mounts {
		if m.Type == "bind" || m.Type == "rbind" || m.Type == "" {
			continue
		}
		found := false
		for k := j; k < len(infos); k++ {
			in := infos[k]
			if in.point == filepath.Clean(m.Destination) && in.fstype == m.Type && in.source == filepath.Clean(m.Source) {
				found, j = true, k+1
				break
			}
		}
		if !found {
			return fmt.Errorf("mounts[%d] %s (%s from %s) missing or out of order", i, m.Destination, m.Type, m.Source)
		}
	}
	return nil
}

func checkUser(s *rspec.Spec) error {
	if uint32(os.Getuid()) != s.Process.User.UID || uint32(os.Getgid()) != s.Process.User.GID {
		return fmt.Errorf("uid/gid expected %d/%d, actual %d/%d", s.Process.User.UID, s.Process.User.GID, os.Getuid(), os.Getgid())
	}
	groups, err := os.Getgroups()
	if err != nil {
		return err
	}
	have := map[int]bool{}
	for _, g := range groups {
		have[g] = true
	}
	for _, g := range s.Process.User.AdditionalGids {
		if !have[int(g)] {
			return fmt.Errorf("additional gids expected %v, actual %v", s.Process.User.AdditionalGids, groups)
		}
	}
	return nil
}

func checkRlimits(s *rspec.Spec) error {
	for _, r := range s.Process.Rlimits {
		res, ok := rlimits[r.Type]
		if !ok {
			return fmt.Errorf("unknown rlimit %s", r.Type)
		}
		var rl unix.Rlimit
		if err := unix.Getrlimit(res, &rl); err != nil {
			return err
		}
		if rl.Cur != r.Soft || rl.Max != r.Hard {
			return fmt.Errorf("%s expected %d/%d, actual %d/%d", r.Type, r.Soft, r.Hard, rl.Cur, rl.Max)
		}
	}
	return nil
}

func checkCaps(s *rspec.Spec) error {
	c := s.Process.Capabilities
	if c == nil {
		return nil
	}
	pc, err := capability.NewPid2(0)
	if err != nil {
		return err
	}
	if err := pc.Load(); err != nil {
		return err
	}
	last := capability.CAP_LAST_CAP
	for _, set := range []struct {
		t    capability.CapType
		want []string
	}{{capability.BOUNDING, c.Bounding}, {capability.EFFECTIVE, c.Effective}, {capability.INHERITABLE, c.Inheritable},
		{capability.PERMITTED, c.Permitted}, {capability.AMBIENT, c.Ambient}} {
		want := map[string]bool{}
		for _, n := range set.want {
			want[n] = true
		}
		for _, cp := range capability.List() {
			if cp > last {
				continue
			}
			key := "CAP_" + strings.ToUpper(cp.String())
			if got := pc.Get(set.t, cp); got != want[key] {
				return fmt.Errorf("%s capability %s: expected %v, actual %v", set.t, key, want[key], got)
			}
		}
	}
	return nil
}

func checkSymlinks(s *rspec.Spec) error {
	for l, dest := range map[string]string{"/dev/fd": "/proc/self/fd", "/dev/stdin": "/proc/self/fd/0",
		"/dev/stdout": "/proc/self/fd/1", "/dev/stderr": "/proc/self/fd/2"} {
		got, err := os.Readlink(l)
		if err != nil {
			return err
		}
		if got != dest {
			return fmt.Errorf("%s -> %s, expected %s", l, got, dest)
		}
	}
	return nil
}

func checkDefaultFS(s *rspec.Spec) error {
	infos, err := mounts()
	if err != nil {
		return err
	}
	got := map[string]string{}
	for _, in := range infos {
		got[in.point] = in.fstype
	}
	for p, t := range map[string]string{"/proc": "proc", "/sys": "sysfs", "/dev/pts": "devpts", "/dev/shm": "tmpfs"} {
		if got[p] != t {
			return fmt.Errorf("%s should be %s, is %q", p, t, got[p])
		}
	}
	return nil
}

func checkDefaultDevices(s *rspec.Spec) error {
	devs := []string{"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty", "/dev/ptmx"}
	if s.Process.Terminal {
		devs = append(devs, "/dev/console")
	}
	for _, d := range devs {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode()&os.ModeDevice == 0 {
			return fmt.Errorf("%s is not a device", d)
		}
	}
	return nil
}

func checkDevices(s *rspec.Spec) error {
	for _, d := range s.Linux.Devices {
		fi, err := os.Stat(d.Path)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		typ := map[uint32]string{syscall.S_IFCHR: "c", syscall.S_IFBLK: "b", syscall.S_IFIFO: "p"}[st.Mode&syscall.S_IFMT]
		want := d.Type
		if want == "u" {
			want = "c"
		}
		if typ != want {
			return fmt.Errorf("%s type expected %s, actual %s", d.Path, d.Type, typ)
		}
		if typ != "p" && (int64(unix.Major(st.Rdev)) != d.Major || int64(unix.Minor(st.Rdev)) != d.Minor) {
			return fmt.Errorf("%s number expected %d:%d, actual %d:%d", d.Path, d.Major, d.Minor, unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
		if d.FileMode != nil && *d.FileMode&os.ModePerm != fi.Mode()&os.ModePerm {
			return fmt.Errorf("%s mode expected %v, actual %v", d.Path, *d.FileMode&os.ModePerm, fi.Mode()&os.ModePerm)
		}
		if d.UID != nil && *d.UID != st.Uid || d.GID != nil && *d.GID != st.Gid {
			return fmt.Errorf("%s owner %d:%d differs from config", d.Path, st.Uid, st.Gid)
		}
	}
	return nil
}

func checkLinuxProcess(s *rspec.Spec) error {
	cmdline, err := os.ReadFile("/proc/self/cmdline")
	if err != nil {
		return err
	}
	args := strings.Split(string(bytes.TrimRight(cmdline, "\x00")), "\x00")
	if strings.Join(args, " ") != strings.Join(s.Process.Args, " ") {
		return fmt.Errorf("args expected %q, actual %q", s.Process.Args, args)
	}
	nnp, err := unix.PrctlRetInt(unix.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)
	if err != nil {
		return err
	}
	if (nnp == 1) != s.Process.NoNewPrivileges {
		return fmt.Errorf("noNewPrivileges expected %v, actual %v", s.Process.NoNewPrivileges, nnp == 1)
	}
	return nil
}

func checkMasked(s *rspec.Spec) error {
	for _, p := range s.Linux.MaskedPaths {
		f, err := os.Open(p)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return err
		}
		fi, _ := f.Stat()
		if fi.IsDir() {
			names, _ := f.Readdirnames(-1)
			f.Close()
			if len(names) != 0 {
				return fmt.Errorf("%s should be empty", p)
			}
			continue
		}
		_, err = f.Read(make([]byte, 1))
		f.Close()
		if err != io.EOF {
			return fmt.Errorf("%s should not be readable", p)
		}
	}
	return nil
}

func checkOOM(s *rspec.Spec) error {
	if s.Process.OOMScoreAdj == nil {
		return nil
	}
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return err
	}
	got, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if got != *s.Process.OOMScoreAdj {
		return fmt.Errorf("oom_score_adj expected %d, actual %d", *s.Process.OOMScoreAdj, got)
	}
	return nil
}

func checkReadonly(s *rspec.Spec) error {
	for _, p := range s.Linux.ReadonlyPaths {
		fi, err := os.Stat(p)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return err
		}
		if fi.IsDir() && writable(p) {
			return fmt.Errorf("%s should be read-only", p)
		}
		var st unix.Statfs_t
		if err := unix.Statfs(p, &st); err == nil && st.Flags&unix.ST_RDONLY == 0 {
			return fmt.Errorf("%s is not mounted read-only", p)
		}
	}
	return nil
}

func checkSysctls(s *rspec.Spec) error {
	for k, v := range s.Linux.Sysctl {
		b, err := os.ReadFile(filepath.Join("/proc/sys", strings.ReplaceAll(k, ".", "/")))
		if err != nil {
			return err
		}
		if got := strings.TrimSpace(string(b)); got != v {
			return fmt.Errorf("sysctl %s expected %q, actual %q", k, v, got)
		}
	}
	return nil
}

func checkIDMap(want []rspec.LinuxIDMapping, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		got = append(got, strings.Join(strings.Fields(l), " "))
	}
	if len(want) == 0 {
		return nil
	}
	if len(want) != len(got) {
		return fmt.Errorf("%s has %d entries, expected %d", path, len(got), len(want))
	}
	for _, m := range want {
		line := fmt.Sprintf("%d %d %d", m.ContainerID, m.HostID, m.Size)
		found := false
		for _, g := range got {
			found = found || g == line
		}
		if !found {
			return fmt.Errorf("%s lacks %q: %q", path, line, got)
		}
	}
	return nil
}
