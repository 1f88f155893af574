package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/akv-csi/provider/hack/sim/model"
)

var palette = []color.Color{
	color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}, // Azure's provider
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, // this provider
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}, // this provider, limited
}

// plots draws the runs of one cluster, one line per run, into dir, each file name with prefix:
// reads, 429s and token requests over time, and with all, the time for new versions to reach
// the pods and the mount latency of the scale-out.
func plots(dir, prefix string, runs []*job, all bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	sc := runs[0].sc
	title := fmt.Sprintf("%d pods on %d nodes, %d objects each, driver %v, rotation every %v; new versions at %v, %d new pods at %v",
		sc.Pods, sc.Nodes, sc.Objects, sc.Driver, sc.Poll, sc.RotateAt, sc.ScaleOut, sc.ScaleOutAt)

	per10s := func(series []int) plotter.XYs { // sliding 10 s sums, one point a second
		var xy plotter.XYs
		sum := 0
		for i := range int(sc.End / time.Second) {
			if i < len(series) {
				sum += series[i]
			}
			if i >= 10 && i-10 < len(series) {
				sum -= series[i-10]
			}
			if i >= 9 {
				xy = append(xy, plotter.XY{X: float64(i+1) / 60, Y: float64(sum)})
			}
		}
		return xy
	}
	series := []struct {
		file, y string
		of      func(model.Result) []int
		budget  bool
	}{
		{"kv-reads.png", "Key Vault reads served per 10 s", func(r model.Result) []int { return r.ReadsPerSec }, true},
		{"kv-throttled.png", "Key Vault 429s per 10 s", func(r model.Result) []int { return r.ThrottledPerSec }, false},
		{"entra-tokens.png", "Entra ID token requests per 10 s", func(r model.Result) []int { return r.TokensPerSec }, false},
	}
	if !all {
		series = series[:1]
	}
	for _, s := range series {
		p := newPlot(title, "minutes", s.y)
		for i, j := range runs {
			if err := addLine(p, per10s(s.of(j.res)), legend(j), i); err != nil {
				return err
			}
		}
		if s.budget {
			budget, err := plotter.NewLine(plotter.XYs{{X: 0, Y: 4000}, {X: sc.End.Minutes(), Y: 4000}})
			if err != nil {
				return err
			}
			budget.Color, budget.Dashes = color.Gray{Y: 0x60}, []vg.Length{vg.Points(4), vg.Points(3)}
			p.Add(budget)
			p.Legend.Add("one vault's budget", budget)
		}
		p.Y.Min, p.Y.Max = 0, p.Y.Max*1.35 // room for the legend above the lines
		if err := save(p, filepath.Join(dir, prefix+s.file)); err != nil {
			return err
		}
	}

	cdf := func(file, x string, of func(model.Result) ([]time.Duration, int)) error {
		p := newPlot(title, x, "share of pods")
		p.Y.Min, p.Y.Max = 0, 1.35
		p.Legend.Top, p.Legend.Left = true, false
		for i, j := range runs {
			durations, missing := of(j.res)
			total := len(durations) + missing
			xy := plotter.XYs{{X: 0, Y: 0}}
			for k, d := range durations {
				xy = append(xy, plotter.XY{X: d.Seconds(), Y: float64(k+1) / float64(total)})
			}
			if err := addLine(p, xy, legend(j), i); err != nil {
				return err
			}
		}
		return save(p, filepath.Join(dir, file))
	}
	if !all {
		return nil
	}
	if err := cdf("rotation-reach.png", "seconds from new versions in the vault to the pod's files",
		func(r model.Result) ([]time.Duration, int) { return r.RotationReach, r.NotReached }); err != nil {
		return err
	}
	return cdf("scaleout-latency.png", "seconds from a new pod's start to its volume mounted",
		func(r model.Result) ([]time.Duration, int) { return r.ScaleOutLatency, r.NotMounted })
}

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.X.Tick.Marker = plot.TickerFunc(func(lo, hi float64) []plot.Tick { // a labelled tick every 1 (minute) or 10 (seconds)
		step := 1.0
		if hi-lo > 20 {
			step = 10
		}
		var ticks []plot.Tick
		for v := math.Ceil(lo/step) * step; v <= hi; v += step {
			ticks = append(ticks, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', -1, 64)})
		}
		return ticks
	})
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = vg.Points(9)
	p.X.Label.Text, p.Y.Label.Text = x, y
	p.Legend.Top, p.Legend.Left = true, true
	p.Add(plotter.NewGrid())
	return p
}

func addLine(p *plot.Plot, xy plotter.XYs, name string, i int) error {
	l, err := plotter.NewLine(xy)
	if err != nil {
		return err
	}
	l.Color, l.Width = palette[i%len(palette)], vg.Points(1.2)
	l.StepStyle = plotter.NoStep
	p.Add(l)
	p.Legend.Add(name, l)
	return nil
}

func save(p *plot.Plot, file string) error {
	p.Legend.ThumbnailWidth = vg.Points(16)
	p.Legend.Padding = vg.Points(2)
	p.Legend.YOffs = -vg.Points(4)
	return p.Save(10*vg.Inch, 4.5*vg.Inch, file)
}
