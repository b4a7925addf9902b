// Prints the default config.json of runtime-tools' generator, as the validation suite uses it.
package main

import (
	"os"

	"github.com/opencontainers/runtime-tools/generate"
)

func main() {
	g, err := generate.New("linux")
	if err != nil {
		panic(err)
	}
	g.SetRootPath(".")
	g.SetProcessArgs([]string{"/incheck"})
	if err := g.Save(os.Stdout, generate.ExportOptions{}); err != nil {
		panic(err)
	}
}
