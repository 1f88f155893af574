// Command mkimages builds, without Docker or a registry, every image the real-node e2e runs, under
// the exact references the charts render (one docker-archive tar, for `ctr images import`):
//
//	mkimages --images refs.txt --out images.tar --dockerfile Dockerfile --context . --bins DIR ...
//
// refs.txt lists image references, one per line (what `helm template` renders, plus the sandbox
// image). Each reference's repository picks a recipe; a reference with no recipe is an error, so
// a chart that starts using a new image fails here by name. The provider's image comes from the
// repository's Dockerfile (dockerfile.go); the others are a static binary on a small base layer,
// Azure's provider (for the rehearsed switch) among them, built from its module.
package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// busyboxApplets are linked into /bin of the images that carry busybox: the driver needs
// mount/umount, the workload a shell and the tools its scripts use.
var busyboxApplets = []string{"sh", "mount", "umount", "cat", "sleep", "sha256sum", "ls", "stat", "echo", "find", "sort", "wc", "env", "id", "test", "printf", "grep", "head", "cut", "tr", "date", "true", "mkdir", "rm", "xargs"}

type options struct {
	images, out, dockerfile, context, bins, busybox, crds, providerRepo, workloadRef, azureRepo string
}

func main() {
	var o options
	flag.StringVar(&o.images, "images", "", "file with one image reference per line")
	flag.StringVar(&o.out, "out", "", "docker-archive tar to write")
	flag.StringVar(&o.dockerfile, "dockerfile", "Dockerfile", "the provider's Dockerfile")
	flag.StringVar(&o.context, "context", ".", "the provider's build context (the repository root)")
	flag.StringVar(&o.bins, "bins", "", "directory with the static binaries: secrets-store-csi-driver, kubectl, registrar, livenessprobe, pause")
	flag.StringVar(&o.busybox, "busybox", "/bin/busybox", "a static busybox (Debian's busybox-static)")
	flag.StringVar(&o.crds, "crds", "", "the driver chart's crds directory (for the driver-crds image)")
	flag.StringVar(&o.providerRepo, "provider-repo", "ghcr.io/akv-csi/provider", "repository of the provider image in the chart")
	flag.StringVar(&o.workloadRef, "workload", "e2e.local/workload:1", "reference of the test workload image (busybox)")
	flag.StringVar(&o.azureRepo, "azure-provider-repo", "mcr.microsoft.com/oss/v2/azure/secrets-store/provider-azure",
		"repository of Azure's provider image in its chart (binary secrets-store-csi-driver-provider-azure in --bins)")
	flag.Parse()
	if err := run(o); err != nil {
		log.Fatalf("mkimages: %v", err)
	}
}

func run(o options) error {
	refs, err := readRefs(o.images)
	if err != nil {
		return err
	}
	refs = append(refs, o.workloadRef)
	out := map[name.Reference]v1.Image{}
	built := map[string]v1.Image{} // by recipe, so two tags of one recipe share the image
	for _, r := range refs {
		ref, err := name.ParseReference(r, name.WeakValidation)
		if err != nil {
			return fmt.Errorf("image %q: %w", r, err)
		}
		if _, ok := ref.(name.Tag); !ok {
			return fmt.Errorf("image %q: only tags can be imported without a registry (the chart renders a digest: unset it)", r)
		}
		recipe := recipeFor(o, ref.Context().Name())
		if recipe == "" {
			return fmt.Errorf("image %q: no recipe for repository %s (known: %s, %s, driver, driver-crds, csi-node-driver-registrar, livenessprobe, pause, %s)", r, ref.Context().Name(), o.providerRepo, o.azureRepo, o.workloadRef)
		}
		img := built[recipe]
		if img == nil {
			if img, err = build(o, recipe); err != nil {
				return fmt.Errorf("image %q: %w", r, err)
			}
			built[recipe] = img
		}
		out[ref] = img
		log.Printf("%-70s <- %s", r, recipe)
	}
	return tarball.MultiRefWriteToFile(o.out, out)
}

func readRefs(file string) ([]string, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	seen := map[string]bool{}
	var refs []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		r := strings.Trim(strings.TrimSpace(sc.Text()), `"'`)
		if r != "" && !seen[r] {
			seen[r] = true
			refs = append(refs, r)
		}
	}
	sort.Strings(refs)
	return refs, sc.Err()
}

func recipeFor(o options, repo string) string {
	if r, err := name.NewRepository(o.providerRepo, name.WeakValidation); err == nil && repo == r.Name() {
		return "provider"
	}
	if r, err := name.ParseReference(o.workloadRef, name.WeakValidation); err == nil && repo == r.Context().Name() {
		return "workload"
	}
	if r, err := name.NewRepository(o.azureRepo, name.WeakValidation); err == nil && repo == r.Name() {
		return "azure-provider"
	}
	switch path.Base(repo) {
	case "driver", "driver-crds", "csi-node-driver-registrar", "livenessprobe", "pause":
		return path.Base(repo)
	}
	return ""
}

func build(o options, recipe string) (v1.Image, error) {
	bin := func(n string) string { return filepath.Join(o.bins, n) }
	switch recipe {
	case "provider":
		return providerImage(o)
	case "driver":
		return image(v1.Config{Entrypoint: []string{"/secrets-store-csi-driver"}}, append(busybox(o.busybox), file("/secrets-store-csi-driver", bin("secrets-store-csi-driver")))...)
	case "driver-crds":
		l := []entry{file("/bin/kubectl", bin("kubectl"))}
		crds, err := tree("/crds", o.crds)
		if err != nil {
			return nil, err
		}
		return image(v1.Config{Entrypoint: []string{"/bin/kubectl"}}, append(l, crds...)...)
	case "csi-node-driver-registrar":
		return image(v1.Config{Entrypoint: []string{"/csi-node-driver-registrar"}}, file("/csi-node-driver-registrar", bin("registrar")))
	case "livenessprobe":
		return image(v1.Config{Entrypoint: []string{"/livenessprobe"}}, file("/livenessprobe", bin("livenessprobe")))
	case "pause":
		return image(v1.Config{Entrypoint: []string{"/pause"}}, file("/pause", bin("pause")))
	case "workload":
		return image(v1.Config{Entrypoint: []string{"/bin/sh"}}, busybox(o.busybox)...)
	case "azure-provider": // as its Dockerfile: the binary in /bin, run by name
		const b = "/bin/secrets-store-csi-driver-provider-azure"
		return image(v1.Config{Entrypoint: []string{b}}, file(b, bin("secrets-store-csi-driver-provider-azure")))
	}
	return nil, fmt.Errorf("unknown recipe %s", recipe)
}

// providerImage runs the Dockerfile's builder stage into a scratch OUT and lays out its final
// stage on the base layer (a stand-in for distroless static: /etc/passwd with nonroot, /tmp).
func providerImage(o options) (v1.Image, error) {
	text, err := os.ReadFile(o.dockerfile)
	if err != nil {
		return nil, err
	}
	_, stages, err := parseDockerfile(string(text))
	if err != nil {
		return nil, err
	}
	builder, final := stages[0], stages[len(stages)-1]
	outDir, err := os.MkdirTemp("", "mkimages-out-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(outDir)
	set := map[string]string{"OUT": outDir, "TARGETOS": "linux", "TARGETARCH": "amd64", "VERSION": "e2e-node"}
	if err := runBuilder(builder, o.context, set); err != nil {
		return nil, err
	}
	fs, err := parseFinal(final, builder.name, set)
	if err != nil {
		return nil, err
	}
	var entries []entry
	for _, c := range fs.copies {
		e, err := tree(c.dst, c.src)
		if err != nil {
			return nil, err
		}
		entries = append(entries, e...)
	}
	return image(fs.cfg, entries...)
}

// entry is one file, directory or symlink of a layer.
type entry struct {
	path, src, link string
	data            []byte
	mode            int64
	dir             bool
}

func file(p, src string) entry { return entry{path: p, src: src, mode: 0o755} }

// tree copies a host file or directory to p.
func tree(p, src string) ([]entry, error) {
	var out []entry
	err := filepath.WalkDir(src, func(s string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, s)
		dst := path.Join(p, filepath.ToSlash(rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			out = append(out, entry{path: dst, dir: true, mode: 0o755})
		} else {
			out = append(out, entry{path: dst, src: s, mode: int64(info.Mode().Perm())})
		}
		return nil
	})
	return out, err
}

func busybox(bin string) []entry {
	e := []entry{file("/bin/busybox", bin)}
	for _, a := range busyboxApplets {
		e = append(e, entry{path: "/bin/" + a, link: "busybox"})
	}
	return e
}

func image(cfg v1.Config, files ...entry) (v1.Image, error) {
	entries := []entry{
		{path: "/etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/bin/sh\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{path: "/etc/group", mode: 0o644, data: []byte("root:x:0:\nnonroot:x:65532:\n")},
		{path: "/tmp", dir: true, mode: 0o1777},
	}
	entries = append(entries, files...)
	layer, err := layerOf(entries)
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cfg.Env = append(cfg.Env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	if cfg.WorkingDir == "" {
		cfg.WorkingDir = "/"
	}
	img, err = mutate.Config(img, cfg)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	return mutate.ConfigFile(img, cf)
}

// layerOf writes the entries (and their parent directories) into one uncompressed tar layer.
func layerOf(entries []entry) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{"/": true}
	var mkdirs func(p string) error
	mkdirs = func(p string) error {
		if dirs[p] {
			return nil
		}
		if err := mkdirs(path.Dir(p)); err != nil {
			return err
		}
		dirs[p] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(p, "/") + "/", Mode: 0o755})
	}
	for _, e := range entries {
		if err := mkdirs(path.Dir(e.path)); err != nil {
			return nil, err
		}
		name := strings.TrimPrefix(e.path, "/")
		switch {
		case e.dir:
			if dirs[e.path] {
				continue
			}
			dirs[e.path] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: e.mode}); err != nil {
				return nil, err
			}
		case e.link != "":
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: e.link, Mode: 0o777}); err != nil {
				return nil, err
			}
		default:
			data := e.data
			if e.src != "" {
				var err error
				if data, err = os.ReadFile(e.src); err != nil {
					return nil, err
				}
			}
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: e.mode, Size: int64(len(data))}); err != nil {
				return nil, err
			}
			if _, err := tw.Write(data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
}
