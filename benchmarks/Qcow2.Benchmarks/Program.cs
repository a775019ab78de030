using BenchmarkDotNet.Running;

// Runs the suites named on the command line, e.g.
//   dotnet run -c Release --project benchmarks/Qcow2.Benchmarks -- --filter '*ReadBenchmarks*' --job short
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
