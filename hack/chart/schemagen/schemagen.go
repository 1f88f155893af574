// Package schemagen turns the Kubernetes OpenAPI v2 document (swagger.json)
// into the per-kind JSON schemas kubeconform loads with
//
//	-schema-location '<dir>/{{ .ResourceKind }}{{ .KindSuffix }}.json'
//
// so that rendered manifests can be validated offline. Like kubeconform's own
// openapi2jsonschema it lets optional fields be null (helm renders
// `creationTimestamp: null`), accepts both forms of int-or-string and of
// resource quantities, and, when strict, forbids unknown properties.
package schemagen

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

const refPrefix = "#/definitions/"

// quantityDef is serialised as a string by the API server, but manifests may
// write it as a number (cpu: 1).
const quantityDef = "io.k8s.apimachinery.pkg.api.resource.Quantity"

type gvk struct {
	Group   string `json:"group"`
	Version string `json:"version"`
	Kind    string `json:"kind"`
}

// Generate reads swagger.json at swaggerPath and writes one schema per
// group/version/kind into outDir. It returns the number of files written.
func Generate(swaggerPath, outDir string, strict bool) (int, error) {
	raw, err := os.ReadFile(swaggerPath)
	if err != nil {
		return 0, fmt.Errorf("read swagger: %w", err)
	}
	var doc struct {
		Definitions map[string]map[string]any `json:"definitions"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return 0, fmt.Errorf("decode swagger %s: %w", swaggerPath, err)
	}
	if len(doc.Definitions) == 0 {
		return 0, errors.New("swagger has no definitions")
	}

	defs := make(map[string]any, len(doc.Definitions))
	for name, def := range doc.Definitions {
		if name == quantityDef {
			defs[name] = map[string]any{
				"description": def["description"],
				"oneOf":       []any{map[string]any{"type": "string"}, map[string]any{"type": "number"}},
			}
			continue
		}
		defs[name] = convert(def, strict)
	}

	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return 0, fmt.Errorf("create %s: %w", outDir, err)
	}
	written := 0
	names := make([]string, 0, len(doc.Definitions))
	for name := range doc.Definitions {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		kinds, err := gvks(doc.Definitions[name])
		if err != nil {
			return written, fmt.Errorf("definition %s: %w", name, err)
		}
		for _, k := range kinds {
			closure := map[string]any{}
			collect(name, defs, closure)
			out := map[string]any{
				"$schema":     "http://json-schema.org/draft-07/schema#",
				"allOf":       []any{map[string]any{"$ref": refPrefix + name}},
				"definitions": closure,
			}
			data, err := json.Marshal(out)
			if err != nil {
				return written, fmt.Errorf("encode %s: %w", name, err)
			}
			if err := os.WriteFile(filepath.Join(outDir, FileName(k.Group, k.Version, k.Kind)), data, 0o644); err != nil {
				return written, fmt.Errorf("write schema for %s: %w", name, err)
			}
			written++
		}
	}
	return written, nil
}

// FileName is the name kubeconform derives for a kind: lower-case kind, then
// "-" + the first label of the group (if any), then "-" + version.
func FileName(group, version, kind string) string {
	suffix := ""
	if group != "" {
		suffix = "-" + strings.ToLower(strings.Split(group, ".")[0])
	}
	return strings.ToLower(kind) + suffix + "-" + strings.ToLower(version) + ".json"
}

func gvks(def map[string]any) ([]gvk, error) {
	v, ok := def["x-kubernetes-group-version-kind"]
	if !ok {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode gvk: %w", err)
	}
	var out []gvk
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("decode gvk: %w", err)
	}
	return out, nil
}

// collect adds name and every definition it references to closure.
func collect(name string, defs, closure map[string]any) {
	if _, done := closure[name]; done {
		return
	}
	def, ok := defs[name]
	if !ok {
		return
	}
	closure[name] = def
	walkRefs(def, func(ref string) { collect(ref, defs, closure) })
}

func walkRefs(node any, fn func(string)) {
	switch n := node.(type) {
	case map[string]any:
		for k, v := range n {
			if s, ok := v.(string); ok && k == "$ref" && strings.HasPrefix(s, refPrefix) {
				fn(strings.TrimPrefix(s, refPrefix))
				continue
			}
			walkRefs(v, fn)
		}
	case []any:
		for _, v := range n {
			walkRefs(v, fn)
		}
	}
}

// convert rewrites one schema node (recursively): int-or-string becomes
// oneOf string|integer, typed optional properties also accept null, and in
// strict mode objects with declared properties reject unknown ones.
func convert(node map[string]any, strict bool) map[string]any {
	out := make(map[string]any, len(node))
	for k, v := range node {
		out[k] = v
	}
	if f, _ := out["format"].(string); f == "int-or-string" {
		delete(out, "format")
		delete(out, "type")
		out["oneOf"] = []any{map[string]any{"type": "string"}, map[string]any{"type": "integer"}}
	}
	required := map[string]bool{}
	if req, ok := out["required"].([]any); ok {
		for _, r := range req {
			if s, ok := r.(string); ok {
				required[s] = true
			}
		}
	}
	if props, ok := out["properties"].(map[string]any); ok {
		np := make(map[string]any, len(props))
		for name, p := range props {
			pm, ok := p.(map[string]any)
			if !ok {
				np[name] = p
				continue
			}
			c := convert(pm, strict)
			if !required[name] {
				c = nullable(c)
			}
			np[name] = c
		}
		out["properties"] = np
		if _, has := out["additionalProperties"]; strict && !has {
			out["additionalProperties"] = false
		}
	}
	if items, ok := out["items"].(map[string]any); ok {
		out["items"] = convert(items, strict)
	}
	if ap, ok := out["additionalProperties"].(map[string]any); ok {
		out["additionalProperties"] = convert(ap, strict)
	}
	return out
}

// nullable lets a property be null as well: a typed node gets "null" added to
// its type; a $ref or oneOf node is wrapped in anyOf with {type: null}.
func nullable(node map[string]any) map[string]any {
	if t, ok := node["type"].(string); ok {
		node["type"] = []any{t, "null"}
		return node
	}
	if _, ok := node["$ref"]; ok {
		return map[string]any{"anyOf": []any{node, map[string]any{"type": "null"}}}
	}
	if _, ok := node["oneOf"]; ok {
		return map[string]any{"anyOf": []any{node, map[string]any{"type": "null"}}}
	}
	return node
}
