//go:build e2e

package framework

import (
	"context"
	"fmt"
	"sort"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/protobuf/encoding/protowire"
)

// CSIClient calls the CSI identity and node services of a driver over its unix socket.
//
// The root module does not depend on github.com/container-storage-interface/spec, so the few
// messages kubelet sends are encoded here with protowire, field numbers from csi.proto (spec
// v1.x, unchanged since 1.0): NodePublishVolumeRequest, NodeUnpublishVolumeRequest,
// NodeGetInfoResponse and GetPluginInfoResponse.
type CSIClient struct {
	conn *grpc.ClientConn
}

// DialCSI connects to unix://socket (lazily; calls fail until the driver listens).
func DialCSI(socket string) (*CSIClient, error) {
	conn, err := grpc.NewClient("unix://"+socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		return nil, err
	}
	return &CSIClient{conn: conn}, nil
}

// Close closes the connection.
func (c *CSIClient) Close() error { return c.conn.Close() }

// rawCodec passes pre-encoded protobuf bytes through; its name keeps the content type
// application/grpc+proto that the driver's server expects.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

var _ encoding.Codec = rawCodec{}

func (c *CSIClient) invoke(ctx context.Context, method string, req []byte) ([]byte, error) {
	var resp []byte
	if req == nil {
		req = []byte{}
	}
	err := c.conn.Invoke(ctx, method, &req, &resp)
	return resp, err
}

// PluginInfo is GetPluginInfoResponse.
type PluginInfo struct{ Name, VendorVersion string }

// GetPluginInfo calls csi.v1.Identity/GetPluginInfo.
func (c *CSIClient) GetPluginInfo(ctx context.Context) (PluginInfo, error) {
	b, err := c.invoke(ctx, "/csi.v1.Identity/GetPluginInfo", nil)
	if err != nil {
		return PluginInfo{}, err
	}
	f, err := stringFields(b)
	return PluginInfo{Name: f[1], VendorVersion: f[2]}, err
}

// NodeGetInfo calls csi.v1.Node/NodeGetInfo and returns the node id.
func (c *CSIClient) NodeGetInfo(ctx context.Context) (string, error) {
	b, err := c.invoke(ctx, "/csi.v1.Node/NodeGetInfo", nil)
	if err != nil {
		return "", err
	}
	f, err := stringFields(b)
	return f[1], err
}

// PublishRequest is the subset of NodePublishVolumeRequest kubelet fills for an inline volume.
type PublishRequest struct {
	VolumeID      string
	TargetPath    string
	Readonly      bool
	VolumeContext map[string]string
	Secrets       map[string]string // from nodePublishSecretRef
}

// NodePublishVolume calls csi.v1.Node/NodePublishVolume with a mount capability and access
// mode SINGLE_NODE_WRITER, as kubelet does for an ephemeral inline volume.
func (c *CSIClient) NodePublishVolume(ctx context.Context, r PublishRequest) error {
	var b []byte
	b = appendString(b, 1, r.VolumeID)
	b = appendString(b, 4, r.TargetPath)
	// VolumeCapability{mount: MountVolume{}, access_mode: AccessMode{mode: SINGLE_NODE_WRITER}}
	var mode []byte
	mode = protowire.AppendTag(mode, 1, protowire.VarintType)
	mode = protowire.AppendVarint(mode, 1)
	var capab []byte
	capab = protowire.AppendTag(capab, 2, protowire.BytesType)
	capab = protowire.AppendBytes(capab, nil)
	capab = protowire.AppendTag(capab, 3, protowire.BytesType)
	capab = protowire.AppendBytes(capab, mode)
	b = protowire.AppendTag(b, 5, protowire.BytesType)
	b = protowire.AppendBytes(b, capab)
	if r.Readonly {
		b = protowire.AppendTag(b, 6, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	}
	b = appendMap(b, 7, r.Secrets)
	b = appendMap(b, 8, r.VolumeContext)
	_, err := c.invoke(ctx, "/csi.v1.Node/NodePublishVolume", b)
	return err
}

// NodeUnpublishVolume calls csi.v1.Node/NodeUnpublishVolume.
func (c *CSIClient) NodeUnpublishVolume(ctx context.Context, volumeID, targetPath string) error {
	var b []byte
	b = appendString(b, 1, volumeID)
	b = appendString(b, 2, targetPath)
	_, err := c.invoke(ctx, "/csi.v1.Node/NodeUnpublishVolume", b)
	return err
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// appendMap encodes map<string,string> as repeated entries {1: key, 2: value}, in key order.
func appendMap(b []byte, num protowire.Number, m map[string]string) []byte {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		var e []byte
		e = protowire.AppendTag(e, 1, protowire.BytesType)
		e = protowire.AppendString(e, k)
		e = protowire.AppendTag(e, 2, protowire.BytesType)
		e = protowire.AppendString(e, m[k])
		b = protowire.AppendTag(b, num, protowire.BytesType)
		b = protowire.AppendBytes(b, e)
	}
	return b
}

// stringFields decodes the top-level length-delimited fields of a message as strings; other
// wire types are skipped.
func stringFields(b []byte) (map[protowire.Number]string, error) {
	out := map[protowire.Number]string{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, fmt.Errorf("bad protobuf tag: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return nil, fmt.Errorf("bad protobuf field %d: %w", num, protowire.ParseError(m))
			}
			out[num] = string(v)
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return nil, fmt.Errorf("bad protobuf field %d: %w", num, protowire.ParseError(m))
		}
		b = b[m:]
	}
	return out, nil
}
