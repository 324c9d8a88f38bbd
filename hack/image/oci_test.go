package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/require"
)

var commitTime = time.Date(2026, 3, 14, 23, 48, 0, 0, time.UTC)

func testImage() image {
	return cascadeImage([]byte("#!binary\n"), []byte("#!exporter\n"), []byte("ca\n"), "amd64", "example.com/cascade", "v1.2.3", "0123abcd", "https://example.com/src", commitTime)
}

func archive(t *testing.T, img image) ([]byte, digest.Digest) {
	t.Helper()
	var buf bytes.Buffer
	d, err := writeArchive(&buf, img)
	require.NoError(t, err)
	return buf.Bytes(), d
}

func TestArchiveIsReproducible(t *testing.T) {
	a, da := archive(t, testImage())
	b, db := archive(t, testImage())
	require.Equal(t, da, db)
	require.True(t, bytes.Equal(a, b), "two builds of one input must be the same bytes")

	// The order files are listed in does not matter; their content does.
	shuffled := testImage()
	for i, j := 0, len(shuffled.Files)-1; i < j; i, j = i+1, j-1 {
		shuffled.Files[i], shuffled.Files[j] = shuffled.Files[j], shuffled.Files[i]
	}
	_, ds := archive(t, shuffled)
	require.Equal(t, da, ds)

	later := testImage()
	later.Created = commitTime.Add(time.Second)
	_, dl := archive(t, later)
	require.NotEqual(t, da, dl, "the commit time is in the image")
}

func TestArchiveRefusesAPathTwice(t *testing.T) {
	img := testImage()
	img.Files = append(img.Files, file{Path: "etc/passwd", Mode: 0o644})
	_, err := writeArchive(io.Discard, img)
	require.ErrorContains(t, err, "etc/passwd is in the image twice")
}

// layout is an OCI archive read back: its files by name.
type layout map[string][]byte

func readTar(t *testing.T, b []byte) (layout, map[string]*tar.Header) {
	t.Helper()
	files, headers := layout{}, map[string]*tar.Header{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, headers
		}
		require.NoError(t, err)
		data, err := io.ReadAll(tr)
		require.NoError(t, err)
		files[hdr.Name], headers[hdr.Name] = data, hdr
	}
}

// blob reads a blob by descriptor and checks its digest and size.
func (l layout) blob(t *testing.T, d ocispec.Descriptor) []byte {
	t.Helper()
	b, ok := l["blobs/sha256/"+d.Digest.Encoded()]
	require.True(t, ok, "blob %s missing", d.Digest)
	require.Equal(t, d.Digest, digest.FromBytes(b))
	require.EqualValues(t, d.Size, len(b))
	return b
}

func (l layout) decode(t *testing.T, d ocispec.Descriptor, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal(l.blob(t, d), v))
}

// TestArchiveIsAnOCILayout reads the archive the way a runtime does: from
// index.json to the manifest, the config and the layer.
func TestArchiveIsAnOCILayout(t *testing.T) {
	b, d := archive(t, testImage())
	l, _ := readTar(t, b)
	require.JSONEq(t, `{"imageLayoutVersion":"1.0.0"}`, string(l["oci-layout"]))

	var index ocispec.Index
	require.NoError(t, json.Unmarshal(l["index.json"], &index))
	require.Len(t, index.Manifests, 1)
	require.Equal(t, d, index.Manifests[0].Digest)
	require.Equal(t, "example.com/cascade:v1.2.3", index.Manifests[0].Annotations[ocispec.AnnotationRefName])
	require.Equal(t, &ocispec.Platform{OS: "linux", Architecture: "amd64"}, index.Manifests[0].Platform)

	var manifest ocispec.Manifest
	l.decode(t, index.Manifests[0], &manifest)
	require.Equal(t, ocispec.MediaTypeImageManifest, manifest.MediaType)
	require.Equal(t, "0123abcd", manifest.Annotations[ocispec.AnnotationRevision])

	var config ocispec.Image
	l.decode(t, manifest.Config, &config)
	require.Equal(t, "65532:65532", config.Config.User, "non-root, by number")
	require.Equal(t, []string{"/usr/bin/cascade"}, config.Config.Entrypoint)
	require.Equal(t, map[string]string{
		"org.opencontainers.image.title":       "cascade",
		"org.opencontainers.image.description": "Watches a Kubernetes control plane and pages once, early, with the root cause named",
		"org.opencontainers.image.version":     "v1.2.3",
		"org.opencontainers.image.revision":    "0123abcd",
		"org.opencontainers.image.source":      "https://example.com/src",
		"org.opencontainers.image.url":         "https://example.com/src",
		"org.opencontainers.image.created":     "2026-03-14T23:48:00Z",
	}, config.Config.Labels)
	require.Equal(t, commitTime, *config.Created)

	require.Len(t, manifest.Layers, 1)
	zr, err := gzip.NewReader(bytes.NewReader(l.blob(t, manifest.Layers[0])))
	require.NoError(t, err)
	layerTar, err := io.ReadAll(zr)
	require.NoError(t, err)
	require.Equal(t, []digest.Digest{digest.FromBytes(layerTar)}, config.RootFS.DiffIDs)

	files, headers := readTar(t, layerTar)
	require.Equal(t, "#!binary\n", string(files["usr/bin/cascade"]))
	require.EqualValues(t, 0o755, headers["usr/bin/cascade"].Mode)
	require.Equal(t, "#!exporter\n", string(files["usr/bin/cascade-exporter"]))
	require.EqualValues(t, 0o755, headers["usr/bin/cascade-exporter"].Mode)
	require.Equal(t, "ca\n", string(files["etc/ssl/certs/ca-certificates.crt"]))
	require.Contains(t, string(files["etc/passwd"]), "cascade:x:65532:65532:")
	require.Equal(t, 65532, headers["var/lib/cascade/"].Uid, "the working directory belongs to the user")
	require.EqualValues(t, 0o1777, headers["tmp/"].Mode)
	for name, hdr := range headers {
		require.True(t, hdr.ModTime.Equal(commitTime), "%s: every timestamp is the commit's", name)
		require.False(t, strings.HasPrefix(name, "/"), name)
	}
}

func TestCABundleIsMozillasRoots(t *testing.T) {
	rest := caBundle()
	n := 0
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		require.NoError(t, err)
		require.True(t, cert.IsCA, cert.Subject)
		n++
	}
	require.Empty(t, bytes.TrimSpace(rest))
	require.Greater(t, n, 100, "a root store has well over a hundred roots")
}

func TestRunNeedsEveryFlag(t *testing.T) {
	out := filepath.Join(t.TempDir(), "image.tar")
	err := run([]string{"--binary", "x", "--exporter-binary", "y", "--arch", "amd64", "--name", "n", "--version", "v", "--revision", "r", "--created", "2026-01-01T00:00:00Z"}, io.Discard)
	require.ErrorContains(t, err, "--output is required")
	err = run([]string{"--binary", "x", "--arch", "amd64", "--name", "n", "--version", "v", "--revision", "r", "--created", "2026-01-01T00:00:00Z", "--output", out}, io.Discard)
	require.ErrorContains(t, err, "--exporter-binary is required")
	err = run([]string{"--binary", "x", "--exporter-binary", "y", "--arch", "amd64", "--name", "n", "--version", "v", "--revision", "r", "--created", "yesterday", "--output", out}, io.Discard)
	require.ErrorContains(t, err, "--created")
	_, err = os.Stat(out)
	require.True(t, os.IsNotExist(err), "nothing is written on bad flags")
}
