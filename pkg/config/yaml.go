package config

import (
	"fmt"
	"strings"

	"sigs.k8s.io/yaml"
)

// decodeObjectsArray reads the objects parameter: a YAML document whose "array" holds one YAML
// document (a string) per object.
func decodeObjectsArray(raw string) ([]string, error) {
	var doc struct {
		Array *[]string `json:"array"`
	}
	if err := yaml.UnmarshalStrict([]byte(raw), &doc); err != nil {
		return nil, fmt.Errorf("%s is not a YAML document of the form \"array: [<object YAML>, ...]\": %s", Objects, yamlProblem(err))
	}
	if doc.Array == nil {
		return nil, fmt.Errorf("%s has no \"array:\" key: write objects: | array: - | objectName: ...", Objects)
	}
	return *doc.Array, nil
}

func unmarshalStrict(entry string, e *objectEntry) error {
	if strings.TrimSpace(entry) == "" {
		return fmt.Errorf("the entry is empty")
	}
	if err := yaml.UnmarshalStrict([]byte(entry), e); err != nil {
		return fmt.Errorf("not a valid object (fields: objectName, objectType, objectAlias, objectVersion, "+
			"objectVersionHistory, objectFormat, objectEncoding, filePermission): %s", yamlProblem(err))
	}
	return nil
}

// yamlProblem shortens decoder errors to one line without echoing large inputs.
func yamlProblem(err error) string {
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	msg = strings.TrimPrefix(msg, "error unmarshaling JSON: while decoding JSON: ")
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	return msg
}
