package main

import (
	"context"
	"io"
	"log/slog"

	"k8s.io/klog/v2"
)

// setupLogging routes klog to w as one JSON object per line when --log-format-json is set; klog
// writes its text format otherwise.
func setupLogging(o Options, w io.Writer) {
	if o.LogFormatJSON {
		klog.SetSlogLogger(slog.New(newJSONLogHandler(w, o.LogVerbosity)))
	}
}

// jsonLogHandler writes klog's lines through slog's JSON handler. klog hands a V(n) line to slog
// at level -n, which a default handler (minimum level INFO) drops, so every -v line would vanish;
// this handler admits levels down to -verbosity and writes them as "level":"INFO" with "v":n, as
// Kubernetes' JSON format does. klog has already applied -v before a line gets here.
type jsonLogHandler struct {
	next slog.Handler
}

func newJSONLogHandler(w io.Writer, verbosity int) slog.Handler {
	return jsonLogHandler{next: slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.Level(-verbosity)})}
}

func (h jsonLogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h jsonLogHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		out := slog.NewRecord(r.Time, slog.LevelInfo, r.Message, r.PC)
		out.AddAttrs(slog.Int("v", int(slog.LevelInfo-r.Level)))
		r.Attrs(func(a slog.Attr) bool {
			out.AddAttrs(a)
			return true
		})
		r = out
	}
	return h.next.Handle(ctx, r)
}

func (h jsonLogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return jsonLogHandler{next: h.next.WithAttrs(as)}
}

func (h jsonLogHandler) WithGroup(name string) slog.Handler {
	return jsonLogHandler{next: h.next.WithGroup(name)}
}
