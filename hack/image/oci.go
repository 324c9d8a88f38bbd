package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// file is one entry of the image's only layer.
type file struct {
	Path     string // relative to /, no trailing slash
	Mode     int64  // permission bits (and sticky)
	Dir      bool
	UID, GID int
	Data     []byte
}

// image is everything the archive is made of. Nothing else goes in: no
// time of the build, no host name, no user, so one input gives one digest.
type image struct {
	Arch        string
	Created     time.Time // every timestamp of the image: the commit's
	Config      ocispec.ImageConfig
	Annotations map[string]string // of the manifest
	RefName     string            // the index's org.opencontainers.image.ref.name
	Files       []file
}

// blob is one content-addressed file of the layout.
type blob struct {
	desc ocispec.Descriptor
	data []byte
}

func newBlob(mediaType string, data []byte) blob {
	return blob{desc: ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}, data: data}
}

func jsonBlob(mediaType string, v any) (blob, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return blob{}, err
	}
	return newBlob(mediaType, b), nil
}

// writeArchive writes img to w as an OCI archive (a tar of an OCI image
// layout, what `podman load`, `docker load` and `skopeo copy oci-archive:`
// read) and returns the digest of its manifest.
func writeArchive(w io.Writer, img image) (digest.Digest, error) {
	created := img.Created.UTC().Truncate(time.Second)
	layerTar, err := layer(img.Files, created)
	if err != nil {
		return "", err
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return "", err
	}
	if _, err := zw.Write(layerTar); err != nil {
		return "", err
	}
	if err := zw.Close(); err != nil {
		return "", err
	}
	layerBlob := newBlob(ocispec.MediaTypeImageLayerGzip, gz.Bytes())

	platform := ocispec.Platform{OS: "linux", Architecture: img.Arch}
	configBlob, err := jsonBlob(ocispec.MediaTypeImageConfig, ocispec.Image{
		Created:  &created,
		Platform: platform,
		Config:   img.Config,
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(layerTar)}},
		History:  []ocispec.History{{Created: &created, CreatedBy: "make image", Comment: "the cascade and cascade-exporter binaries, a CA bundle and a non-root user on an empty base"}},
	})
	if err != nil {
		return "", err
	}
	manifest := ocispec.Manifest{
		MediaType:   ocispec.MediaTypeImageManifest,
		Config:      configBlob.desc,
		Layers:      []ocispec.Descriptor{layerBlob.desc},
		Annotations: img.Annotations,
	}
	manifest.SchemaVersion = 2
	manifestBlob, err := jsonBlob(ocispec.MediaTypeImageManifest, manifest)
	if err != nil {
		return "", err
	}
	desc := manifestBlob.desc
	desc.Platform = &platform
	if img.RefName != "" {
		desc.Annotations = map[string]string{ocispec.AnnotationRefName: img.RefName}
	}
	index := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{desc}}
	index.SchemaVersion = 2
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return "", err
	}
	layoutJSON, err := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err != nil {
		return "", err
	}

	blobs := []blob{layerBlob, configBlob, manifestBlob}
	slices.SortFunc(blobs, func(a, b blob) int { return strings.Compare(a.desc.Digest.String(), b.desc.Digest.String()) })
	entries := []file{
		{Path: "blobs", Dir: true, Mode: 0o755},
		{Path: "blobs/sha256", Dir: true, Mode: 0o755},
	}
	for _, b := range blobs {
		entries = append(entries, file{Path: "blobs/sha256/" + b.desc.Digest.Encoded(), Mode: 0o644, Data: b.data})
	}
	entries = append(entries,
		file{Path: ocispec.ImageIndexFile, Mode: 0o644, Data: indexJSON},
		file{Path: ocispec.ImageLayoutFile, Mode: 0o644, Data: layoutJSON},
	)
	tw := tar.NewWriter(w)
	if err := writeEntries(tw, entries, created); err != nil {
		return "", err
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	return manifestBlob.desc.Digest, nil
}

// layer is the uncompressed tar of files, sorted by path so that the order
// the caller lists them in does not change the digest.
func layer(files []file, created time.Time) ([]byte, error) {
	files = slices.Clone(files)
	slices.SortFunc(files, func(a, b file) int { return strings.Compare(a.Path, b.Path) })
	for i := 1; i < len(files); i++ {
		if files[i].Path == files[i-1].Path {
			return nil, fmt.Errorf("%s is in the image twice", files[i].Path)
		}
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := writeEntries(tw, files, created); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeEntries(tw *tar.Writer, files []file, created time.Time) error {
	for _, f := range files {
		hdr := &tar.Header{
			Name:    f.Path,
			Mode:    f.Mode,
			Uid:     f.UID,
			Gid:     f.GID,
			ModTime: created,
		}
		if f.Dir {
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
		} else {
			hdr.Typeflag = tar.TypeReg
			hdr.Size = int64(len(f.Data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("%s: %w", f.Path, err)
		}
		if _, err := tw.Write(f.Data); err != nil {
			return fmt.Errorf("%s: %w", f.Path, err)
		}
	}
	return nil
}
