package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
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
		return fmt.Errorf("not a valid object (fields: objectName, objectType, objectAlias, objectVersion, "+
			"objectVersionHistory, objectFormat, objectEncoding, filePermission): %w", err)
	}
	return nil
}

var typeNameRE = regexp.MustCompile(` in type [\w.]+`)

// decodeStrict decodes one YAML document, rejecting unknown fields, and shortens the decoder's
// error to one line that does not echo the input.
func decodeStrict(doc string, out any) error {
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
