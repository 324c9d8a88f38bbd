// Command image writes Cascade's container image as an OCI archive, with no
// container daemon: the cascade binary (the entrypoint) and cascade-exporter
// beside it, a CA bundle for HTTPS (remote write, Loki, Alertmanager) and a
// non-root user on an empty base, labelled with the org.opencontainers.image.*
// keys. The same binaries and commit give the same digest. `make image` builds
// the binaries and runs it; see README.md.
package main

import (
	"bytes"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/crypto/x509roots/fallback/bundle"

	"github.com/cascade-sre/cascade/internal/atomicfile"
)

// The image's user: an unprivileged number, the same as distroless's
// "nonroot", so Kubernetes' runAsNonRoot can check it without a passwd lookup.
const (
	uid      = 65532
	userName = "cascade"
	home     = "/var/lib/cascade" // the working directory: cascade run keeps ./data here
	binPath  = "/usr/bin/cascade"
	// exporterBinPath is cascade-exporter, `cascade exporter` alone: what the
	// exporter Deployment runs, a third of cascade's size and resident pages.
	exporterBinPath = "/usr/bin/cascade-exporter"
	caPath          = "/etc/ssl/certs/ca-certificates.crt" // where Go's crypto/x509 looks first on Linux
	webPort         = "9847/tcp"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	var (
		binary   = fs.String("binary", "", "the linux cascade binary to put in the image (required)")
		exporter = fs.String("exporter-binary", "", "the linux cascade-exporter binary to put beside it (required)")
		arch     = fs.String("arch", "", "its GOARCH (required)")
		name     = fs.String("name", "", "image name without tag, e.g. ghcr.io/cascade-sre/cascade (required)")
		version  = fs.String("version", "", "version: the tag and org.opencontainers.image.version (required)")
		revision = fs.String("revision", "", "the commit: org.opencontainers.image.revision (required)")
		created  = fs.String("created", "", "the commit's time, RFC 3339: every timestamp in the image (required)")
		source   = fs.String("source", "https://github.com/cascade-sre/cascade", "org.opencontainers.image.source")
		output   = fs.String("output", "", "the OCI archive to write (required)")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, f := range []struct{ name, value string }{
		{"binary", *binary}, {"exporter-binary", *exporter}, {"arch", *arch}, {"name", *name}, {"version", *version},
		{"revision", *revision}, {"created", *created}, {"output", *output},
	} {
		if f.value == "" {
			return fmt.Errorf("--%s is required", f.name)
		}
	}
	when, err := time.Parse(time.RFC3339, *created)
	if err != nil {
		return fmt.Errorf("--created: %w", err)
	}
	bin, err := os.ReadFile(*binary)
	if err != nil {
		return err
	}
	exporterBin, err := os.ReadFile(*exporter)
	if err != nil {
		return err
	}
	img := cascadeImage(bin, exporterBin, caBundle(), *arch, *name, *version, *revision, *source, when)
	var dgst string
	err = atomicfile.Write(*output, 0o644, func(w io.Writer) error {
		d, err := writeArchive(w, img)
		dgst = d.String()
		return err
	})
	if err != nil {
		return fmt.Errorf("write %s: %w", *output, err)
	}
	_, err = fmt.Fprintf(stdout, "%s:%s@%s\n", *name, *version, dgst)
	return err
}

// cascadeImage is what goes into the image, and nothing else.
func cascadeImage(bin, exporterBin, caBundle []byte, arch, name, version, revision, source string, created time.Time) image {
	labels := map[string]string{
		ocispec.AnnotationTitle:       "cascade",
		ocispec.AnnotationDescription: "Watches a Kubernetes control plane and pages once, early, with the root cause named",
		ocispec.AnnotationVersion:     version,
		ocispec.AnnotationRevision:    revision,
		ocispec.AnnotationSource:      source,
		ocispec.AnnotationURL:         source,
		ocispec.AnnotationCreated:     created.UTC().Format(time.RFC3339),
	}
	user := fmt.Sprintf("%d:%d", uid, uid)
	return image{
		Arch:    arch,
		Created: created,
		Config: ocispec.ImageConfig{
			User:         user,
			ExposedPorts: map[string]struct{}{webPort: {}},
			Entrypoint:   []string{binPath},
			WorkingDir:   home,
			Labels:       labels,
		},
		Annotations: labels,
		RefName:     name + ":" + version,
		Files: []file{
			{Path: "etc", Dir: true, Mode: 0o755},
			{Path: "etc/passwd", Mode: 0o644, Data: fmt.Appendf(nil, "root:x:0:0:root:/root:/sbin/nologin\n%s:x:%d:%d:%s:%s:/sbin/nologin\n", userName, uid, uid, userName, home)},
			{Path: "etc/group", Mode: 0o644, Data: fmt.Appendf(nil, "root:x:0:\n%s:x:%d:\n", userName, uid)},
			{Path: "etc/ssl", Dir: true, Mode: 0o755},
			{Path: "etc/ssl/certs", Dir: true, Mode: 0o755},
			{Path: caPath[1:], Mode: 0o644, Data: caBundle},
			{Path: "tmp", Dir: true, Mode: 0o1777},
			{Path: "usr", Dir: true, Mode: 0o755},
			{Path: "usr/bin", Dir: true, Mode: 0o755},
			{Path: binPath[1:], Mode: 0o755, Data: bin},
			{Path: exporterBinPath[1:], Mode: 0o755, Data: exporterBin},
			{Path: "var", Dir: true, Mode: 0o755},
			{Path: "var/lib", Dir: true, Mode: 0o755},
			{Path: home[1:], Dir: true, Mode: 0o755, UID: uid, GID: uid},
		},
	}
}

// caBundle is Mozilla's root store as golang.org/x/crypto/x509roots/fallback
// ships it, pinned by go.sum, so the bundle changes only when the module
// does, never with the build machine's packages. Roots that carry a
// constraint a PEM file cannot hold (distrust after a date) are left out.
func caBundle() []byte {
	var buf bytes.Buffer
	for root := range bundle.Roots() {
		if root.Constraint != nil {
			continue
		}
		buf.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Certificate}))
	}
	return buf.Bytes()
}
