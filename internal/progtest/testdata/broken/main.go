// Command broken does not compile, for TestPathBuildFailure.
package main

func main() { undefinedFunction() }
