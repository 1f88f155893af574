package check

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The SecretProviderClass API of the Secrets Store CSI Driver.
const (
	spcGroup = "secrets-store.csi.x-k8s.io"
	spcKind  = "SecretProviderClass"
	// providerName is the spec.provider this provider serves (its socket is azure.sock).
	providerName = "azure"
)

// spcVersions are the API versions the driver serves.
var spcVersions = []string{"v1", "v1alpha1"}

// maxManifestBytes bounds one manifest file (a SecretProviderClass is a few KiB; a kubectl list of
// every one in a cluster a few MiB).
const maxManifestBytes = 32 << 20

// spc is one SecretProviderClass as written in a manifest, with the lines its parts start on.
type spc struct {
	File      string
	Line      int // of the document (or List item)
	Name      string
	Namespace string
	Provider  string
	// Parameters are spec.parameters; a value that is not a string is kept as written, and
	// reported in Problems.
	Parameters map[string]string
	// SecretObjects are spec.secretObjects: the Kubernetes Secrets the driver syncs from the files.
	SecretObjects []secretObject
	Problems      []Problem

	providerLine int
	paramsLine   int
	paramLines   map[string]int
	// objectLines are the lines of the entries of the objects parameter, when it is a block scalar.
	objectLines []int
}

// secretObject is one entry of spec.secretObjects.
type secretObject struct {
	SecretName string
	Type       string
	Line       int
	Data       []secretObjectData
}

type secretObjectData struct {
	ObjectName, Key string
	Line            int
}

// source is one manifest read: its SecretProviderClasses, and what else it held.
type source struct {
	SPCs []*spc
	// Skipped counts documents that are not SecretProviderClasses of this provider, by reason.
	Skipped map[string]int
	// Others are the SecretProviderClasses of other providers, by namespace/name.
	Others map[string]bool
	// Problem is set when the file could not be read or is not YAML.
	Problem *Problem
}

// readManifests reads every SecretProviderClass from files ("-" is in). A directory stands for the
// .yaml, .yml and .json files in it.
func readManifests(files []string, in io.Reader) ([]source, error) {
	var out []source
	for _, f := range files {
		names := []string{f}
		if f != "-" {
			info, err := os.Stat(f)
			if err != nil {
				out = append(out, source{Problem: &Problem{File: f, Message: fmt.Sprintf("cannot read: %v", unwrapPath(err))}})
				continue
			}
			if info.IsDir() {
				names = nil
				entries, err := os.ReadDir(f)
				if err != nil {
					return nil, err
				}
				for _, e := range entries {
					switch strings.ToLower(filepath.Ext(e.Name())) {
					case ".yaml", ".yml", ".json":
						if !e.IsDir() {
							names = append(names, filepath.Join(f, e.Name()))
						}
					}
				}
				if len(names) == 0 {
					out = append(out, source{Problem: &Problem{File: f, Message: "the directory has no .yaml, .yml or .json file"}})
				}
			}
		}
		for _, name := range names {
			data, err := readManifest(name, in)
			if err != nil {
				out = append(out, source{Problem: &Problem{File: displayName(name), Message: err.Error()}})
				continue
			}
			out = append(out, parseManifest(displayName(name), data))
		}
	}
	return out, nil
}

func displayName(name string) string {
	if name == "-" {
		return "<stdin>"
	}
	return name
}

func readManifest(name string, in io.Reader) ([]byte, error) {
	r := in
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("cannot read: %w", unwrapPath(err))
		}
		defer f.Close()
		r = f
	}
	if r == nil {
		return nil, errors.New("cannot read standard input")
	}
	data, err := io.ReadAll(io.LimitReader(r, maxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read: %w", unwrapPath(err))
	}
	if len(data) > maxManifestBytes {
		return nil, fmt.Errorf("larger than %d MiB", maxManifestBytes>>20)
	}
	return data, nil
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// parseManifest reads the documents of one file: SecretProviderClasses, and Lists of them as
// kubectl get -o yaml writes them.
func parseManifest(file string, data []byte) source {
	src := source{Skipped: map[string]int{}, Others: map[string]bool{}}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			src.Problem = &Problem{File: file, Message: "not YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
			return src
		}
		if len(doc.Content) == 0 {
			continue
		}
		src.add(file, doc.Content[0])
	}
	return src
}

func (src *source) add(file string, n *yaml.Node) {
	if n.Kind != yaml.MappingNode {
		if n.Kind != yaml.ScalarNode || n.Tag != "!!null" {
			src.Skipped["not a Kubernetes object"]++
		}
		return
	}
	kind := scalar(get(n, "kind"))
	apiVersion := scalar(get(n, "apiVersion"))
	if strings.HasSuffix(kind, "List") {
		items := get(n, "items")
		if items != nil && items.Kind == yaml.SequenceNode {
			for _, it := range items.Content {
				src.add(file, it)
			}
		}
		return
	}
	if kind != spcKind {
		if kind == "" {
			kind = "an object without kind"
		}
		src.Skipped[kind]++
		return
	}
	group, version, _ := strings.Cut(apiVersion, "/")
	if group != spcGroup {
		src.Skipped[spcKind+" of "+apiVersion]++
		return
	}
	s := readSPC(file, n)
	if !slices.Contains(spcVersions, version) {
		s.problem(n.Line, "apiVersion %q is not one the driver serves: use %s/%s", apiVersion, spcGroup, spcVersions[0])
	}
	switch {
	case s.Provider == "":
		s.problem(n.Line, "spec.provider is missing: set it to %q", providerName)
	case s.Provider != providerName && strings.EqualFold(s.Provider, providerName):
		s.problem(s.providerLine, "spec.provider %q must be %q, in lower case: the driver calls the provider whose socket has exactly that name", s.Provider, providerName)
	case s.Provider != providerName:
		src.Skipped["SecretProviderClass of provider "+s.Provider]++
		src.Others[s.Namespace+"/"+s.Name] = true
		return
	}
	src.SPCs = append(src.SPCs, s)
}

func readSPC(file string, n *yaml.Node) *spc {
	s := &spc{File: file, Line: n.Line, Parameters: map[string]string{}, paramLines: map[string]int{}}
	meta := get(n, "metadata")
	s.Name, s.Namespace = scalar(get(meta, "name")), scalar(get(meta, "namespace"))
	if s.Name == "" {
		s.problem(n.Line, "metadata.name is missing")
	}
	spec := get(n, "spec")
	if spec == nil || spec.Kind != yaml.MappingNode {
		s.problem(n.Line, "spec is missing")
		return s
	}
	s.Provider, s.providerLine = scalar(get(spec, "provider")), keyLine(spec, "provider")
	params := get(spec, "parameters")
	s.paramsLine = keyLine(spec, "parameters")
	switch {
	case params == nil:
	case params.Kind != yaml.MappingNode:
		s.problem(s.paramsLine, "spec.parameters must be a mapping of strings")
	default:
		for i := 0; i+1 < len(params.Content); i += 2 {
			k, v := params.Content[i], params.Content[i+1]
			s.paramLines[k.Value] = k.Line
			if v.Kind != yaml.ScalarNode {
				s.problem(k.Line, "spec.parameters.%s must be a string, not a %s", k.Value, kindName(v))
				continue
			}
			if v.Tag != "!!str" {
				s.problem(k.Line, "spec.parameters.%s is %s, not a string: quote it (%q); the API server refuses parameters that are not strings",
					k.Value, tagName(v.Tag), v.Value)
			}
			s.Parameters[k.Value] = v.Value
			if k.Value == "objects" {
				s.objectLines = entryLines(v)
			}
		}
	}
	if so := get(spec, "secretObjects"); so != nil && so.Kind == yaml.SequenceNode {
		for _, item := range so.Content {
			o := secretObject{SecretName: scalar(get(item, "secretName")), Type: scalar(get(item, "type")), Line: item.Line}
			if data := get(item, "data"); data != nil && data.Kind == yaml.SequenceNode {
				for _, d := range data.Content {
					o.Data = append(o.Data, secretObjectData{ObjectName: scalar(get(d, "objectName")), Key: scalar(get(d, "key")), Line: d.Line})
				}
			}
			s.SecretObjects = append(s.SecretObjects, o)
		}
	}
	return s
}

// entryLines finds the line of each entry of the objects array, when the parameter is a block
// scalar (objects: |), whose lines are the manifest's lines from the next one on.
func entryLines(v *yaml.Node) []int {
	if v.Style&(yaml.LiteralStyle|yaml.FoldedStyle) == 0 {
		return nil
	}
	var doc yaml.Node
	if yaml.Unmarshal([]byte(v.Value), &doc) != nil || len(doc.Content) == 0 {
		return nil
	}
	array := get(doc.Content[0], "array")
	if array == nil || array.Kind != yaml.SequenceNode {
		return nil
	}
	lines := make([]int, len(array.Content))
	for i, e := range array.Content {
		lines[i] = v.Line + e.Line
	}
	return lines
}

func (s *spc) problem(line int, format string, args ...any) {
	s.Problems = append(s.Problems, Problem{File: s.File, Line: line, Message: fmt.Sprintf(format, args...)})
}

// get returns the value of key in a mapping node, or nil.
func get(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// keyLine is the line of key in a mapping node (of the mapping when the key is absent).
func keyLine(n *yaml.Node, key string) int {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i].Line
		}
	}
	return n.Line
}

func scalar(n *yaml.Node) string {
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return ""
	}
	return n.Value
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.AliasNode:
		return "alias"
	}
	return "scalar"
}

func tagName(tag string) string {
	switch tag {
	case "!!bool":
		return "a boolean"
	case "!!int":
		return "a number"
	case "!!float":
		return "a number"
	case "!!null":
		return "empty (null)"
	}
	return "not a string (" + tag + ")"
}

// sortedSkips lists the skipped kinds of documents, with counts.
func sortedSkips(m map[string]int) []string {
	var out []string
	for k, n := range m {
		out = append(out, fmt.Sprintf("%d %s", n, k))
	}
	sort.Strings(out)
	return out
}
