# Shared by .ci/slurm/start and .ci/slurm/stop: where the single-node cluster keeps its PIDs and logs.
CLUSTER=bratsflow
RUN_DIR=/run/bratsflow-slurm
LOG_DIR=/var/log/bratsflow-slurm

# True while the daemon NAME that start launched is running.
alive() { [[ -s $RUN_DIR/$1.pid ]] && kill -0 "$(cat "$RUN_DIR/$1.pid")" 2>/dev/null; }

# Ends the daemon NAME by its recorded PID and waits for it to exit (SIGKILL after 30 s).
terminate() {
    local name=$1 pid
    if alive "$name"; then
        pid=$(cat "$RUN_DIR/$name.pid")
        kill "$pid"
        for ((i = 0; i < 120; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.25
        done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
        echo "slurm: stopped $name ($pid)"
    fi
    rm -f "$RUN_DIR/$name.pid"
}
