// Command hello is the program TestPath builds.
package main

import "fmt"

func main() { fmt.Println("hello from the built program") }
