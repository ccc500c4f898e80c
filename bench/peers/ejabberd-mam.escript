#!/usr/bin/env escript
%% bench/compare.sh's archive scenarios: counts or empties mod_mam's Mnesia table (archive_msg,
%% one record per archived message per account) on a running ejabberd node.
%%
%% Usage (distribution flags come from ERL_FLAGS, as for ejabberd-accounts.escript):
%%   ERL_FLAGS="..." escript ejabberd-mam.escript NODE count|clear
main([NodeS, Cmd]) ->
    Node = list_to_atom(NodeS),
    pong == net_adm:ping(Node) orelse fail("cannot reach node ~s", [NodeS]),
    case Cmd of
        "count" ->
            case rpc:call(Node, mnesia, table_info, [archive_msg, size]) of
                N when is_integer(N) -> io:format("~b~n", [N]);
                Bad -> fail("counting archive_msg failed: ~p", [Bad])
            end;
        "clear" ->
            case rpc:call(Node, mnesia, clear_table, [archive_msg]) of
                {atomic, ok} -> ok;
                Bad -> fail("clearing archive_msg failed: ~p", [Bad])
            end;
        _ -> fail("unknown command ~s (count, clear)", [Cmd])
    end;
main(_) ->
    fail("usage: ejabberd-mam.escript NODE count|clear", []).

fail(Fmt, Args) ->
    io:format(standard_error, "ejabberd-mam: " ++ Fmt ++ "~n", Args),
    halt(1).
