#!/usr/bin/env escript
%% bench/compare.sh: writes the rosters of the roster scenarios on a running ejabberd node.
%% FILE holds one `user contact` line per roster item (usernames on HOST, written by
%% `weft-bench rosters --ejabberd-pairs`); every item gets subscription both, no name, no
%% groups. Items go into mod_roster's Mnesia table as #roster{} records (include/mod_roster.hrl
%% of ejabberd 23.01: usj, us, jid, name, subscription, ask, groups, askmessage, xs), written
%% on the node by mnesia:dirty_write/1 in batches of 5000 over one distribution connection
%% while the table is in RAM only (see below): a mod_roster:set_roster/1 transaction per item
%% would take many minutes for the login scenario's hundreds of thousands. mod_roster's cache does not know them: the node must be restarted
%% before they are read (compare.sh stops it afterwards and starts it fresh per run). Checks
%% the first and last user's roster through mod_roster:get_roster/2 against the file.
%%
%% Usage (distribution flags come from ERL_FLAGS, as for ejabberd-accounts.escript):
%%   ERL_FLAGS="..." escript ejabberd-rosters.escript NODE HOST FILE
% Compiled, not interpreted: the login scenario's file has hundreds of thousands of lines.
-mode(compile).

main([NodeS, HostS, File]) ->
    Node = list_to_atom(NodeS),
    Host = list_to_binary(HostS),
    pong == net_adm:ping(Node) orelse fail("cannot reach node ~s", [NodeS]),
    T0 = erlang:monotonic_time(millisecond),
    {ok, Text} = file:read_file(File),
    Lines = [L || L <- binary:split(Text, <<"\n">>, [global]), L /= <<>>],
    Pairs = [list_to_tuple(binary:split(L, <<" ">>)) || L <- Lines],
    Records = [{roster, {U, Host, {C, Host, <<>>}}, {U, Host}, {C, Host, <<>>}, <<>>, both,
                none, [], <<>>, []} || {U, C} <- Pairs],
    % The table is made ram_copies while it is written, then disc_copies again, which writes
    % it to disk once: every write to a disc_copies table goes through Mnesia's log, a hand-off
    % to another thread each (800,000 items took 260 s on the pinned one-core node, as one
    % transaction per batch did too; the same writes to a RAM table take a few seconds).
    copy_type(Node, ram_copies),
    write(Node, Records),
    copy_type(Node, disc_copies),
    {First, _} = hd(Pairs),
    {Last, _} = lists:last(Pairs),
    [check(Node, Host, U, length([x || {U2, _} <- Pairs, U2 == U])) || U <- [First, Last]],
    io:format("ejabberd rosters: ~b items in ~.2f s~n",
              [length(Records), (erlang:monotonic_time(millisecond) - T0) / 1000]);
main(_) ->
    fail("usage: ejabberd-rosters.escript NODE HOST FILE", []).

write(Node, Records) -> write(Node, Records, [], 0).

% Batches of 5000 records per call.
write(Node, [], Batch, _) -> write_batch(Node, Batch);
write(Node, Rest, Batch, 5000) ->
    write_batch(Node, Batch),
    write(Node, Rest, [], 0);
write(Node, [R | Rest], Batch, N) -> write(Node, Rest, [R | Batch], N + 1).

write_batch(_Node, []) -> ok;
write_batch(Node, Batch) ->
    % An external fun (fun M:F/A) is only a name: it runs on the node.
    case rpc:call(Node, lists, foreach, [fun mnesia:dirty_write/1, Batch]) of
        ok -> ok;
        Bad -> fail("writing roster items failed: ~p", [Bad])
    end.

copy_type(Node, Type) ->
    case rpc:call(Node, mnesia, change_table_copy_type, [roster, Node, Type]) of
        {atomic, ok} -> ok;
        {aborted, {already_exists, roster, Node, Type}} -> ok;
        Bad -> fail("making the roster table ~p failed: ~p", [Type, Bad])
    end.

check(Node, Host, User, Expected) ->
    case rpc:call(Node, mod_roster, get_roster, [User, Host]) of
        Items when is_list(Items), length(Items) == Expected -> ok;
        Other -> fail("~s@~s's roster: ~p, expected ~b items", [User, Host, Other, Expected])
    end.

fail(Fmt, Args) ->
    io:format(standard_error, "ejabberd-rosters: " ++ Fmt ++ "~n", Args),
    halt(1).
