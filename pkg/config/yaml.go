package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"slices"
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
// document (a string) per object. As with Azure's provider, a missing or empty array is no object
// and other keys are ignored; unknown names the ignored keys.
func decodeObjectsArray(raw string) (entries, unknown []string, missingArray bool, err error) {
	var doc struct {
		Array *[]string `yaml:"array"`
	}
	unknown, err = decodeLenient(raw, &doc, []string{"array"})
	if err != nil {
		return nil, nil, false, fmt.Errorf("%s is not a YAML document of the form \"array: [<object YAML>, ...]\": %w", Objects, err)
	}
	if doc.Array == nil {
		return nil, unknown, !hasKey(raw, "array"), nil
	}
	return *doc.Array, unknown, false, nil
}

// hasKey reports whether the top-level mapping of doc has the key (with any value, null included).
func hasKey(doc, key string) bool {
	var root yaml.Node
	if yaml.Unmarshal([]byte(doc), &root) != nil || len(root.Content) == 0 {
		return false
	}
	m := root.Content[0]
	for i := 0; m.Kind == yaml.MappingNode && i+1 < len(m.Content); i += 2 {
		if m.Content[i].Kind == yaml.ScalarNode && m.Content[i].Value == key {
			return true
		}
	}
	return false
}

// unmarshalEntry decodes one object entry; unknown names its fields that no provider reads.
func unmarshalEntry(entry string, e *objectEntry) (unknown []string, err error) {
	if strings.TrimSpace(entry) == "" {
		return nil, errors.New("the entry is empty")
	}
	unknown, err = decodeLenient(entry, e, objectFields())
	if err != nil {
		return nil, fmt.Errorf("not a valid object (fields: %s): %w", strings.Join(objectFields(), ", "), err)
	}
	return unknown, nil
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

// decodeLenient decodes one YAML document into out, ignoring keys of its top-level mapping that
// are not in known (as Azure's provider does) and returning them; a value of the wrong type is
// still an error. The decoder's error is shortened to one line that does not echo the input.
func decodeLenient(doc string, out any, known []string) (unknown []string, err error) {
	// The node tree is built without expanding aliases or comparing keys, in time linear in the
	// document; what the decoder would do in more than that is refused here.
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &root); err == nil {
		if err := checkMappings(&root, 0); err != nil {
			return nil, err
		}
		// Without an alias, the node count is bounded by the document's bytes.
		if n := expandedNodes(&root, map[*yaml.Node]int{}); strings.Contains(doc, "*") && n > MaxYAMLNodes {
			return nil, fmt.Errorf("the document expands (through its aliases) to more than %d YAML nodes", MaxYAMLNodes)
		}
		unknown = unknownKeys(&root, known)
	} // a syntax error is reported by the decoder below
	err = yaml.NewDecoder(bytes.NewReader([]byte(doc))).Decode(out)
	if errors.Is(err, io.EOF) {
		return nil, errors.New("the document is empty")
	}
	if err == nil {
		return unknown, nil
	}
	msg := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", " ")), " ")
	msg = strings.TrimPrefix(msg, "yaml: ")
	msg = typeNameRE.ReplaceAllString(msg, "")
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	return nil, errors.New(msg)
}

// unknownKeys lists the keys of the document's top-level mapping that are not in known, each
// once, in document order. "<<" (a YAML merge) is the decoder's own.
func unknownKeys(root *yaml.Node, known []string) []string {
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return nil
	}
	m := root.Content[0]
	var unknown []string
	for i := 0; i+1 < len(m.Content); i += 2 {
		k := m.Content[i]
		name := k.Value
		if k.Kind != yaml.ScalarNode {
			name = "(a key that is not a string)"
		}
		if name != "<<" && !slices.Contains(known, name) && !slices.Contains(unknown, name) {
			unknown = append(unknown, name)
		}
	}
	return unknown
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
