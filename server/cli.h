/* The subcommands of the cnnserve binary; each returns the process exit status. */
#ifndef CNN_CLI_H
#define CNN_CLI_H

/* argv[0] is the first argument after the subcommand name. */
int serve_main(int argc, char **argv);
int classify_main(int argc, char **argv);
int bench_main(int argc, char **argv);
int eval_main(int argc, char **argv);
int train_main(int argc, char **argv);

#endif
