package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// objectEntry is one entry of the objects array as written in the SecretProviderClass. yaml.v3
// keeps the literal text of a scalar decoded into a string, so an unquoted all-digit version such
// as 0123 stays "0123" (as with Azure's provider), instead of becoming a number.
type objectEntry struct {
	ObjectName           string `yaml:"objectName"`
	ObjectType           string `yaml:"objectType"`
	ObjectAlias          string `yaml:"objectAlias"`
	ObjectVersion        string `yaml:"objectVersion"`
	ObjectVersionHistory int32  `yaml:"objectVersionHistory"`
	ObjectFormat         string `yaml:"objectFormat"`
	ObjectEncoding       string `yaml:"objectEncoding"`
	FilePermission       string `yaml:"filePermission"`
	ObjectJSONKey        string `yaml:"objectJSONKey"`
	ObjectOptional       string `yaml:"objectOptional"`
	KeyvaultName         string `yaml:"keyvaultName"`
	ObjectNamePrefix     string `yaml:"objectNamePrefix"`
	ObjectTags           string `yaml:"objectTags"`
	ObjectPFXPassword    string `yaml:"objectPFXPasswordSecret"`
	ObjectPFXEncryption  string `yaml:"objectPFXEncryption"`
}

// decodeObjectsArray reads the objects parameter: a YAML document whose "array" holds one YAML
// document (a string) per object.
func decodeObjectsArray(raw string) ([]string, error) {
	var doc struct {
		Array *[]string `yaml:"array"`
	}
	if err := decodeStrict(raw, &doc); err != nil {
		return nil, fmt.Errorf("%s is not a YAML document of the form \"array: [<object YAML>, ...]\": %w", Objects, err)
	}
	if doc.Array == nil {
		return nil, fmt.Errorf("%s has no \"array:\" key: write objects: | array: - | objectName: <name>", Objects)
	}
	return *doc.Array, nil
}

func unmarshalStrict(entry string, e *objectEntry) error {
	if strings.TrimSpace(entry) == "" {
		return errors.New("the entry is empty")
	}
	if err := decodeStrict(entry, e); err != nil {
		return fmt.Errorf("not a valid object (fields: %s): %w", strings.Join(objectFields(), ", "), err)
	}
	return nil
}

// objectFields lists the fields of an objects entry, in objectEntry's order.
func objectFields() []string {
	t := reflect.TypeFor[objectEntry]()
	out := make([]string, t.NumField())
	for i := range out {
		out[i] = t.Field(i).Tag.Get("yaml")
	}
	return out
}

var typeNameRE = regexp.MustCompile(` in type [\w.]+`)

// MaxYAMLKeys bounds the keys of one YAML mapping: the decoder compares every pair of keys (a
// mapping of thousands of repeated keys would cost gigabytes), and an object has fewer than 20 fields.
const MaxYAMLKeys = 64

// checkMappings refuses a mapping with more than MaxYAMLKeys keys or a repeated scalar key.
func checkMappings(n *yaml.Node, depth int) error {
	if n == nil || depth > 100 {
		return nil
	}
	if n.Kind == yaml.MappingNode {
		if len(n.Content)/2 > MaxYAMLKeys {
			return fmt.Errorf("a mapping has %d keys, more than the %d allowed", len(n.Content)/2, MaxYAMLKeys)
		}
		seen := make(map[string]bool, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := n.Content[i]; k.Kind == yaml.ScalarNode {
				if seen[k.Value] {
					return fmt.Errorf("the key %q appears twice in one mapping", truncate(k.Value, 64))
				}
				seen[k.Value] = true
			}
		}
	}
	for _, c := range n.Content {
		if err := checkMappings(c, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// MaxYAMLNodes bounds the nodes of one YAML document after its aliases are expanded, so an
// alias bomb (a few lines that expand to billions of nodes) is refused before it is decoded.
const MaxYAMLNodes = 10000

// decodeStrict decodes one YAML document, rejecting unknown fields, and shortens the decoder's
// error to one line that does not echo the input.
func decodeStrict(doc string, out any) error {
	// The node tree is built without expanding aliases or comparing keys, in time linear in the
	// document; what the decoder would do in more than that is refused here.
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &root); err == nil {
		if err := checkMappings(&root, 0); err != nil {
			return err
		}
		// Without an alias, the node count is bounded by the document's bytes.
		if n := expandedNodes(&root, map[*yaml.Node]int{}); strings.Contains(doc, "*") && n > MaxYAMLNodes {
			return fmt.Errorf("the document expands (through its aliases) to more than %d YAML nodes", MaxYAMLNodes)
		}
	} // a syntax error is reported by the strict decoder below
	dec := yaml.NewDecoder(bytes.NewReader([]byte(doc)))
	dec.KnownFields(true)
	err := dec.Decode(out)
	if errors.Is(err, io.EOF) {
		return errors.New("the document is empty")
	}
	if err == nil {
		return nil
	}
	msg := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", " ")), " ")
	msg = strings.TrimPrefix(msg, "yaml: ")
	msg = typeNameRE.ReplaceAllString(msg, "")
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	return errors.New(msg)
}

// expandedNodes counts the nodes of n with every alias replaced by what it names, stopping just
// past MaxYAMLNodes. Sizes are remembered per node, so the walk is linear in the document's size.
func expandedNodes(n *yaml.Node, seen map[*yaml.Node]int) int {
	if n == nil {
		return 0
	}
	if size, ok := seen[n]; ok {
		return size
	}
	seen[n] = MaxYAMLNodes + 1 // an alias cycle counts as too large
	size := 1
	if n.Kind == yaml.AliasNode {
		size += expandedNodes(n.Alias, seen)
	}
	for _, c := range n.Content {
		size += expandedNodes(c, seen)
		if size > MaxYAMLNodes {
			break
		}
	}
	size = min(size, MaxYAMLNodes+1)
	seen[n] = size
	return size
}
