// Package hack_test runs the scripts a bare machine runs and CI never does
// (CI's machine already has what they install): hack/install-deps.sh and
// .ci/run, against stand-in commands first on PATH, without touching the
// machine.
package hack_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// packages are the Debian packages install-deps.sh installs.
var packages = []string{"etcd-server", "mtail", "nginx", "podman", "prometheus", "prometheus-alertmanager", "runc", "tmux"}

// machine is a sandbox: a bin directory holding only the real tools the
// scripts may use plus stand-ins, and a state directory the stand-ins
// record into.
type machine struct {
	t     *testing.T
	bin   string
	state string
	env   []string
}

// realTools are what a bare Debian machine has and the scripts use.
var realTools = []string{"bash", "cat", "chmod", "cut", "date", "dirname", "env", "mkdir", "mktemp", "rm", "sed", "sha256sum", "sort", "tee"}

func newMachine(t *testing.T, uid int, withSudo bool, installed ...string) *machine {
	t.Helper()
	m := &machine{t: t, bin: t.TempDir(), state: t.TempDir()}
	for _, tool := range realTools {
		p, err := exec.LookPath(tool)
		require.NoError(t, err, "the test needs %s", tool)
		require.NoError(t, os.Symlink(p, filepath.Join(m.bin, tool)))
	}
	m.standIn("id", `[ "$1" = -u ] && { cat "$STATE/uid"; exit 0; }; exit 1`)
	// dpkg-query -W -f=FORMAT PKG: prints "installed" for what the state lists.
	m.standIn("dpkg-query", `pkg=${!#}; if grep -qx "$pkg" "$STATE/installed" 2>/dev/null; then printf installed; exit 0; fi; echo "dpkg-query: no packages found matching $pkg" >&2; exit 1`)
	// apt-get records each call with whether it ran as root and whether the
	// service policy was in place; install marks its packages installed.
	m.standIn("apt-get", `echo "apt-get $* uid=$(id -u) policy=$([ -x "$CASCADE_POLICY_RC_D" ] && echo yes || echo no) frontend=$DEBIAN_FRONTEND" >> "$STATE/calls"
[ "$(id -u)" = 0 ] || { echo "E: Could not open lock file - are you root?" >&2; exit 100; }
[ "$1" = "$APT_FAIL" ] && { echo "E: $1 failed" >&2; exit 100; }
if [ "$1" = install ]; then for a in "$@"; do case "$a" in -*|install) ;; *) echo "$a" >> "$STATE/installed";; esac; done; fi
exit 0`)
	if withSudo {
		// sudo -E CMD...: runs CMD as root.
		m.standIn("sudo", `echo "sudo $*" >> "$STATE/calls"; [ "$1" = -E ] && shift; echo 0 > "$STATE/uid"; "$@"; rc=$?; echo `+strconv.Itoa(uid)+` > "$STATE/uid"; exit $rc`)
	}
	// grep is a real tool the stand-ins use; the script itself must not need it.
	p, err := exec.LookPath("grep")
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Join(m.state, "stand-in-tools"), 0o755))
	require.NoError(t, os.Symlink(p, filepath.Join(m.state, "stand-in-tools", "grep")))

	require.NoError(t, os.WriteFile(filepath.Join(m.state, "uid"), []byte(strconv.Itoa(uid)+"\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(m.state, "installed"), []byte(strings.Join(installed, "\n")+"\n"), 0o644))
	m.env = []string{
		"PATH=" + m.bin,
		"HOME=" + m.state,
		"STATE=" + m.state,
		"CASCADE_DEPS_STEPS=packages",
		"CASCADE_POLICY_RC_D=" + filepath.Join(m.state, "policy-rc.d"),
	}
	return m
}

func (m *machine) standIn(name, body string) {
	m.t.Helper()
	script := "#!" + filepath.Join(m.bin, "bash") + "\nPATH=\"$PATH:$STATE/stand-in-tools\"\n" + body + "\n"
	require.NoError(m.t, os.WriteFile(filepath.Join(m.bin, name), []byte(script), 0o755))
}

// run runs the script and returns its exit code and stderr.
func (m *machine) run(script string, extraEnv ...string) (int, string) {
	m.t.Helper()
	root, err := filepath.Abs("..")
	require.NoError(m.t, err)
	cmd := exec.Command(filepath.Join(m.bin, "bash"), filepath.Join(root, script))
	cmd.Env = append(append([]string{}, m.env...), extraEnv...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr
	err = cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(m.t, err)
	}
	return code, stderr.String()
}

func (m *machine) calls() []string {
	b, err := os.ReadFile(filepath.Join(m.state, "calls"))
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(m.t, err)
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func (m *machine) policyLeft() bool {
	_, err := os.Stat(filepath.Join(m.state, "policy-rc.d"))
	return err == nil
}

func TestInstallDepsAsRootAllPresent(t *testing.T) {
	m := newMachine(t, 0, false, packages...)
	code, out := m.run("hack/install-deps.sh")
	require.Equal(t, 0, code, out)
	require.Empty(t, m.calls(), "nothing to install, nothing called")
}

// The bug this test exists for: as root, "$sudo -E apt-get" with an empty
// $sudo ran a command named -E.
func TestInstallDepsAsRootSomeMissing(t *testing.T) {
	m := newMachine(t, 0, false, "etcd-server", "prometheus")
	code, out := m.run("hack/install-deps.sh")
	require.Equal(t, 0, code, out)
	require.Equal(t, []string{
		"apt-get update -qq uid=0 policy=yes frontend=noninteractive",
		"apt-get install -y -qq --no-install-recommends mtail nginx podman prometheus-alertmanager runc tmux uid=0 policy=yes frontend=noninteractive",
	}, m.calls())
	require.False(t, m.policyLeft(), "the service policy must be removed after the install")
	require.Contains(t, out, "installed mtail nginx podman prometheus-alertmanager runc tmux")
}

func TestInstallDepsAsUserWithSudo(t *testing.T) {
	m := newMachine(t, 1, true, "etcd-server", "mtail", "podman", "prometheus", "prometheus-alertmanager", "runc", "tmux")
	code, out := m.run("hack/install-deps.sh")
	require.Equal(t, 0, code, out)
	calls := m.calls()
	require.Contains(t, calls, "sudo -E apt-get update -qq")
	require.Contains(t, calls, "apt-get install -y -qq --no-install-recommends nginx uid=0 policy=yes frontend=noninteractive")
	require.False(t, m.policyLeft())
}

func TestInstallDepsAsUserWithSudoAllPresent(t *testing.T) {
	m := newMachine(t, 1, true, packages...)
	code, out := m.run("hack/install-deps.sh")
	require.Equal(t, 0, code, out)
	require.Empty(t, m.calls(), "sudo must not be asked for when nothing is missing")
}

func TestInstallDepsAsUserWithoutSudo(t *testing.T) {
	m := newMachine(t, 1, false, "etcd-server")
	code, out := m.run("hack/install-deps.sh")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "need root to apt-get install mtail nginx podman prometheus prometheus-alertmanager runc tmux")
	require.Empty(t, m.calls())
	require.False(t, m.policyLeft())
}

func TestInstallDepsAsUserWithoutSudoAllPresent(t *testing.T) {
	m := newMachine(t, 1, false, packages...)
	code, out := m.run("hack/install-deps.sh")
	require.Equal(t, 0, code, out)
}

func TestInstallDepsAptFailure(t *testing.T) {
	for _, step := range []string{"update", "install"} {
		t.Run(step, func(t *testing.T) {
			m := newMachine(t, 0, false)
			code, out := m.run("hack/install-deps.sh", "APT_FAIL="+step)
			require.NotEqual(t, 0, code, out)
			require.Contains(t, out, "apt-get "+step)
			require.Contains(t, out, "failed")
			require.False(t, m.policyLeft(), "a failed install must not leave services disabled")
		})
	}
}

// An existing policy (the machine's own) is neither replaced nor removed.
func TestInstallDepsKeepsAnExistingPolicy(t *testing.T) {
	m := newMachine(t, 0, false)
	policy := filepath.Join(m.state, "policy-rc.d")
	require.NoError(t, os.WriteFile(policy, []byte("#!/bin/sh\nexit 0\n"), 0o755))
	code, out := m.run("hack/install-deps.sh")
	require.Equal(t, 0, code, out)
	b, err := os.ReadFile(policy)
	require.NoError(t, err)
	require.Equal(t, "#!/bin/sh\nexit 0\n", string(b))
}

func TestInstallDepsWithoutDpkg(t *testing.T) {
	m := newMachine(t, 0, false)
	require.NoError(t, os.Remove(filepath.Join(m.bin, "dpkg-query")))
	code, out := m.run("hack/install-deps.sh")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "dpkg-query not found")
}

func TestInstallDepsToolsWithoutGo(t *testing.T) {
	m := newMachine(t, 0, false, packages...)
	code, out := m.run("hack/install-deps.sh", "CASCADE_DEPS_STEPS=tools")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "go not found")
}

// goStandIn is a go command that builds nothing: `go build -o OUT` and
// `go install PKG@V` write a script that prints its name, and every call is
// recorded, with GOTOOLCHAIN when set. GO_FAIL=PKG makes building,
// installing or getting PKG fail. `go list ... PKG` prints the modules PKG
// is built from: $STATE/deps-NAME (NAME the package's last element) if
// present, else one line. `go mod download -json MOD@V` answers as the real
// one does, pointing at a go.mod with replace directives in the state
// directory (none with GO_FAIL=download); a build in a module copies that
// module's go.mod and directory name there as built-with.go.mod and
// built-in.
const goStandIn = `echo "go $*${GOTOOLCHAIN:+ GOTOOLCHAIN=$GOTOOLCHAIN}" >> "$STATE/calls"
case "$1" in
list)
  pkg=${!#}
  if [ -f "$STATE/deps-${pkg##*/}" ]; then cat "$STATE/deps-${pkg##*/}"; else echo "k8s.io/kubernetes@v1.37.2"; fi;;
build)
  pkg=${!#}
  [ "$pkg" = "$GO_FAIL" ] && { echo "go: $pkg: build failed" >&2; exit 1; }
  [ -f go.mod ] && { cat go.mod > "$STATE/built-with.go.mod"; pwd > "$STATE/built-in"; }
  while [ "$1" != -o ]; do shift; done
  printf '#!%s\necho Kubernetes v1.37.2\n' "$BASH" > "$2"; chmod +x "$2";;
install|get)
  pkg=${2%@*}
  [ "$pkg" = "$GO_FAIL" ] && { echo "go: $pkg: build failed" >&2; exit 1; }
  [ "$1" = get ] && exit 0
  printf '#!%s\necho %s\n' "$BASH" "$pkg" > "$GOBIN/${pkg##*/}"; chmod +x "$GOBIN/${pkg##*/}";;
mod)
  [ "$GO_FAIL" = download ] && { echo "go: github.com/thanos-io/thanos@v0.42.5: not found" >&2; exit 1; }
  printf 'module github.com/thanos-io/thanos\n\ngo 1.26.10\n\nrequire (\n\tgithub.com/a/b v1.0.0\n)\n\nreplace (\n\t// why\n\tgithub.com/a/b => github.com/c/b v1.0.1\n)\n\nreplace github.com/d/e => github.com/f/e v0.1.0\n' > "$STATE/thanos.mod"
  printf '{\n\t"Path": "github.com/thanos-io/thanos",\n\t"Version": "v0.42.5",\n\t"GoMod": "%s",\n\t"Sum": "h1:x="\n}\n' "$STATE/thanos.mod";;
*) exit 2;;
esac`

// goInstalls are the `go install` calls recorded, by package.
func (m *machine) goInstalls() []string {
	var pkgs []string
	for _, c := range m.calls() {
		if p, ok := strings.CutPrefix(c, "go install "); ok {
			pkgs = append(pkgs, p)
		}
	}
	return pkgs
}

func TestInstallDepsBuildsToolsOnce(t *testing.T) {
	m := newMachine(t, 0, false, packages...)
	m.standIn("go", goStandIn)
	tools := filepath.Join(t.TempDir(), "bin")
	env := []string{"CASCADE_DEPS_STEPS=tools", "CASCADE_TOOLS_DIR=" + tools}

	code, out := m.run("hack/install-deps.sh", env...)
	require.Equal(t, 0, code, out)
	require.Equal(t, []string{
		"github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs@v1.52.1",
		"helm.sh/helm/v3/cmd/helm@v3.22.0",
		"github.com/google/go-jsonnet/cmd/jsonnet@v0.22.0",
		"github.com/VictoriaMetrics/VictoriaMetrics/app/victoria-metrics@v1.151.0",
		"github.com/VictoriaMetrics/VictoriaMetrics/app/vmalert@v1.151.0",
	}, m.goInstalls())
	for _, tool := range []string{"kube-apiserver", "victoria-logs", "helm", "jsonnet", "victoria-metrics", "vmalert", "thanos"} {
		require.FileExists(t, filepath.Join(tools, tool))
	}
	b, err := os.ReadFile(filepath.Join(tools, "helm.version"))
	require.NoError(t, err)
	require.Equal(t, "v3.22.0\n", string(b))

	// Again: everything is there at its version, nothing is built.
	require.NoError(t, os.Remove(filepath.Join(m.state, "calls")))
	code, out = m.run("hack/install-deps.sh", env...)
	require.Equal(t, 0, code, out)
	require.Empty(t, m.goInstalls(), out)
	require.Empty(t, m.thanosCalls(), out)

	// A tool at another version than the script pins is built again, alone.
	require.NoError(t, os.WriteFile(filepath.Join(tools, "jsonnet.version"), []byte("v0.21.0\n"), 0o644))
	code, out = m.run("hack/install-deps.sh", env...)
	require.Equal(t, 0, code, out)
	require.Equal(t, []string{"github.com/google/go-jsonnet/cmd/jsonnet@v0.22.0"}, m.goInstalls())
}

// goBuilds are the Kubernetes commands of the `go build` calls recorded
// (the other builds, such as Thanos's, are not these tests' business).
func (m *machine) goBuilds() []string {
	var pkgs []string
	for _, c := range m.calls() {
		if !strings.HasPrefix(c, "go build ") {
			continue
		}
		for _, f := range strings.Fields(c) {
			if strings.HasPrefix(f, "k8s.io/kubernetes/cmd/") {
				pkgs = append(pkgs, f)
			}
		}
	}
	return pkgs
}

// The Kubernetes commands are built from hack/kube-tools once each, and
// again only when the modules that command is built from change: adding
// kube-controller-manager to the tools module must not rebuild
// kube-apiserver.
func TestInstallDepsBuildsKubeToolsOnce(t *testing.T) {
	m := newMachine(t, 0, false, packages...)
	m.standIn("go", goStandIn)
	tools := filepath.Join(t.TempDir(), "bin")
	env := []string{"CASCADE_DEPS_STEPS=tools", "CASCADE_TOOLS_DIR=" + tools}
	apiserver, kcm := "k8s.io/kubernetes/cmd/kube-apiserver", "k8s.io/kubernetes/cmd/kube-controller-manager"

	code, out := m.run("hack/install-deps.sh", env...)
	require.Equal(t, 0, code, out)
	require.Equal(t, []string{apiserver, kcm}, m.goBuilds())
	for _, tool := range []string{"kube-apiserver", "kube-controller-manager"} {
		require.FileExists(t, filepath.Join(tools, tool))
		require.FileExists(t, filepath.Join(tools, tool+".stamp"))
	}
	require.Contains(t, out, "Kubernetes v1.37.2", "each built command's version is shown")

	require.NoError(t, os.Remove(filepath.Join(m.state, "calls")))
	code, out = m.run("hack/install-deps.sh", env...)
	require.Equal(t, 0, code, out)
	require.Empty(t, m.goBuilds(), out)

	// A module only kube-controller-manager is built from changes: it alone
	// is built again.
	require.NoError(t, os.WriteFile(filepath.Join(m.state, "deps-kube-controller-manager"),
		[]byte("k8s.io/kubernetes@v1.37.2\ngithub.com/google/cadvisor/lib@v0.60.5\n"), 0o644))
	code, out = m.run("hack/install-deps.sh", env...)
	require.Equal(t, 0, code, out)
	require.Equal(t, []string{kcm}, m.goBuilds())

	// The same modules listed in another order are the same pins.
	require.NoError(t, os.WriteFile(filepath.Join(m.state, "deps-kube-controller-manager"),
		[]byte("github.com/google/cadvisor/lib@v0.60.5\nk8s.io/kubernetes@v1.37.2\nk8s.io/kubernetes@v1.37.2\n"), 0o644))
	require.NoError(t, os.Remove(filepath.Join(m.state, "calls")))
	code, out = m.run("hack/install-deps.sh", env...)
	require.Equal(t, 0, code, out)
	require.Empty(t, m.goBuilds(), out)
}

func TestInstallDepsKubeToolBuildFails(t *testing.T) {
	m := newMachine(t, 0, false, packages...)
	m.standIn("go", goStandIn)
	tools := filepath.Join(t.TempDir(), "bin")
	env := []string{"CASCADE_DEPS_STEPS=tools", "CASCADE_TOOLS_DIR=" + tools}
	code, out := m.run("hack/install-deps.sh", append(env, "GO_FAIL=k8s.io/kubernetes/cmd/kube-controller-manager")...)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "go build k8s.io/kubernetes/cmd/kube-controller-manager failed")
	require.NoFileExists(t, filepath.Join(tools, "kube-controller-manager.stamp"), "a failed build is tried again next time")

	code, out = m.run("hack/install-deps.sh", env...)
	require.Equal(t, 0, code, out)
	require.Contains(t, m.goBuilds(), "k8s.io/kubernetes/cmd/kube-controller-manager")
}

func TestInstallDepsKubeToolListFails(t *testing.T) {
	m := newMachine(t, 0, false, packages...)
	m.standIn("go", `case "$1" in list) echo "go: missing go.sum entry" >&2; exit 1;; *) exit 2;; esac`)
	code, out := m.run("hack/install-deps.sh", "CASCADE_DEPS_STEPS=tools", "CASCADE_TOOLS_DIR="+filepath.Join(t.TempDir(), "bin"))
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "go list k8s.io/kubernetes/cmd/kube-apiserver failed")
}

func TestInstallDepsToolBuildFails(t *testing.T) {
	m := newMachine(t, 0, false, packages...)
	m.standIn("go", goStandIn)
	tools := filepath.Join(t.TempDir(), "bin")
	code, out := m.run("hack/install-deps.sh", "CASCADE_DEPS_STEPS=tools", "CASCADE_TOOLS_DIR="+tools, "GO_FAIL=helm.sh/helm/v3/cmd/helm")
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "go install helm.sh/helm/v3/cmd/helm@v3.22.0 failed")
	require.NoFileExists(t, filepath.Join(tools, "helm.version"), "a failed build is tried again next time")
}

// .ci/run finds Go, and runs the README's test command: make test.
func TestCIRunsMakeTest(t *testing.T) {
	m := newMachine(t, 0, false)
	m.standIn("go", `case "$1" in version) echo "go version go1.26.8 linux/amd64";; env) echo "$STATE/gopath";; *) exit 2;; esac`)
	m.standIn("make", `echo "make $* PATH=$PATH" >> "$STATE/calls"`)
	code, out := m.run(".ci/run")
	require.Equal(t, 0, code, out)
	calls := m.calls()
	require.Len(t, calls, 1)
	require.True(t, strings.HasPrefix(calls[0], "make test "), calls[0])
	require.Contains(t, calls[0], filepath.Join(m.state, "gopath", "bin"), "GOPATH/bin must be on PATH")
	require.Contains(t, out, "go1.26.8")
}

func TestCIWithoutGo(t *testing.T) {
	m := newMachine(t, 0, false)
	m.standIn("make", `echo "make $*" >> "$STATE/calls"`)
	code, out := m.run(".ci/run", "CASCADE_GO_ROOT=/nonexistent")
	require.NotEqual(t, 0, code, out)
	require.Contains(t, out, "Go not found")
	require.Empty(t, m.calls())
}

// thanosCalls are the go calls recorded with GOTOOLCHAIN set: Thanos's
// build, and only it.
func (m *machine) thanosCalls() []string {
	var out []string
	for _, c := range m.calls() {
		if strings.Contains(c, " GOTOOLCHAIN=") {
			out = append(out, c)
		}
	}
	return out
}

// Thanos is built in a throwaway module holding Thanos's own replace
// directives, with Go 1.26.10 for that build alone, once, and again when
// its pin changes; the module is removed afterwards.
func TestInstallDepsBuildsThanosInAThrowawayModule(t *testing.T) {
	m := newMachine(t, 0, false, packages...)
	m.standIn("go", goStandIn)
	tools := filepath.Join(t.TempDir(), "bin")
	tmp := t.TempDir()
	env := []string{"CASCADE_DEPS_STEPS=tools", "CASCADE_TOOLS_DIR=" + tools, "TMPDIR=" + tmp}

	code, out := m.run("hack/install-deps.sh", env...)
	require.Equal(t, 0, code, out)
	require.Equal(t, []string{
		"go mod download -json github.com/thanos-io/thanos@v0.42.5 GOTOOLCHAIN=go1.26.10",
		"go get github.com/thanos-io/thanos/cmd/thanos@v0.42.5 GOTOOLCHAIN=go1.26.10",
		"go build -tags netgo,slicelabels -ldflags -X github.com/prometheus/common/version.Version=0.42.5 -o " + filepath.Join(tools, "thanos") + " github.com/thanos-io/thanos/cmd/thanos GOTOOLCHAIN=go1.26.10",
	}, m.thanosCalls(), "only Thanos's build uses another Go")
	for _, c := range m.calls() {
		if strings.Contains(c, "kube-apiserver") || strings.HasPrefix(c, "go install ") {
			require.NotContains(t, c, "GOTOOLCHAIN", "the other tools build with the machine's Go")
		}
	}
	gomod, err := os.ReadFile(filepath.Join(m.state, "built-with.go.mod"))
	require.NoError(t, err)
	require.Equal(t, "module cascade.local/thanos-build\n\ngo 1.26.10\n\n"+
		"replace (\n\t// why\n\tgithub.com/a/b => github.com/c/b v1.0.1\n)\n"+
		"replace github.com/d/e => github.com/f/e v0.1.0\n", string(gomod), "Thanos's replace directives, nothing of its requirements")
	builtIn, err := os.ReadFile(filepath.Join(m.state, "built-in"))
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(builtIn), tmp+"/"), "built in a temporary module, not in %s", builtIn)
	require.NoDirExists(t, strings.TrimSpace(string(builtIn)), "the throwaway module is removed")
	b, err := os.ReadFile(filepath.Join(tools, "thanos.version"))
	require.NoError(t, err)
	require.Equal(t, "v0.42.5 go1.26.10 netgo,slicelabels\n", string(b), "the pin: version, Go and the build tags of Thanos's releases")
	require.Contains(t, out, "thanos built in")

	// Built once.
	require.NoError(t, os.Remove(filepath.Join(m.state, "calls")))
	code, out = m.run("hack/install-deps.sh", env...)
	require.Equal(t, 0, code, out)
	require.Empty(t, m.thanosCalls())

	// Rebuilt when the pin changes.
	require.NoError(t, os.WriteFile(filepath.Join(tools, "thanos.version"), []byte("v0.42.5 go1.26.10\n"), 0o644))
	code, out = m.run("hack/install-deps.sh", env...)
	require.Equal(t, 0, code, out)
	require.Len(t, m.thanosCalls(), 3)
}

// A failed download or build of Thanos stops the script with its name,
// leaves no version (so it is tried again) and no temporary module.
func TestInstallDepsThanosBuildFails(t *testing.T) {
	for fail, want := range map[string][]string{
		"download":                               {"go mod download github.com/thanos-io/thanos@v0.42.5 failed", "go: github.com/thanos-io/thanos@v0.42.5: not found"},
		"github.com/thanos-io/thanos/cmd/thanos": {"building thanos v0.42.5 failed", "go: github.com/thanos-io/thanos/cmd/thanos: build failed"},
	} {
		t.Run(fail, func(t *testing.T) {
			m := newMachine(t, 0, false, packages...)
			m.standIn("go", goStandIn)
			tools := filepath.Join(t.TempDir(), "bin")
			tmp := t.TempDir()
			code, out := m.run("hack/install-deps.sh", "CASCADE_DEPS_STEPS=tools", "CASCADE_TOOLS_DIR="+tools, "TMPDIR="+tmp, "GO_FAIL="+fail)
			require.Equal(t, 1, code, out)
			for _, w := range want {
				require.Contains(t, out, w, "the failure and go's own words")
			}
			require.NoFileExists(t, filepath.Join(tools, "thanos.version"))
			left, err := os.ReadDir(tmp)
			require.NoError(t, err)
			require.Empty(t, left, "the throwaway module is removed")
		})
	}
}
