# bash completion for virt-perf-hook; generated from virt-perf-hook's command table ('virt-perf-hook __generate'); do not edit.
_virt_perf_hook() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} cmd= files= w
    for w in "${COMP_WORDS[@]:1:COMP_CWORD-1}"; do
        case $w in filter|define|create|apply|status|watch|exporter|top|events|check|refresh|qemu|daemon) cmd=$w; break ;; esac
    done
    case $prev in
        -c|--config|--textfile) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --timeout|-C|--connect|--listen|--interval|--sort) COMPREPLY=(); return ;;
    esac
    local opts="-c --config -v --verbose -q --quiet --timeout -h --help -V --version"
    case $cmd in
        '') COMPREPLY=($(compgen -W "filter define create apply status watch exporter top events check refresh qemu daemon $opts" -- "$cur")); return ;;
        filter) opts+=" --dry-run --diff"; files=1; ;;
        define) opts+=" -C --connect --validate"; files=1; ;;
        create) opts+=" -C --connect --validate --paused"; files=1; ;;
        apply) opts+=" -C --connect --dry-run --all"; ;;
        status) opts+=" -C --connect --json --all"; ;;
        watch) opts+=" -C --connect"; ;;
        exporter) opts+=" -C --connect --listen --textfile --interval --once --readonly"; ;;
        top) opts+=" -C --connect --interval --sort --once --json --readonly"; ;;
        events) opts+=" --json"; ;;
        check) opts+=" --json"; ;;
        refresh) opts+=" "; ;;
        *) return ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    elif [[ -n $files ]]; then
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
}
complete -o filenames -F _virt_perf_hook virt-perf-hook
