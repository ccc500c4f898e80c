#!/usr/bin/env escript
%% bench/compare.sh: creates PREFIX<first>..PREFIX<first+count-1>@HOST on a running ejabberd
%% node in one process. `ejabberdctl register` costs a new Erlang VM per account; this asks the
%% node once for the SCRAM keys of the shared password (ejabberd_auth:password_to_scram/2, so
%% ejabberd's own format and iteration count) and registers every account with that record
%% over one distribution connection. All accounts therefore share one salt, and the load
%% generator derives its salted password once (bench/src/scram.rs).
%%
%% Usage (distribution flags come from ERL_FLAGS, e.g. -name, -setcookie, -hidden):
%%   ERL_FLAGS="..." escript ejabberd-accounts.escript NODE HOST PREFIX FIRST COUNT PASSWORD
main([NodeS, HostS, Prefix, FirstS, CountS, Pass]) ->
    Node = list_to_atom(NodeS),
    Host = list_to_binary(HostS),
    P = list_to_binary(Prefix),
    First = list_to_integer(FirstS),
    Count = list_to_integer(CountS),
    pong == net_adm:ping(Node) orelse fail("cannot reach node ~s", [NodeS]),
    Scram = rpc:call(Node, ejabberd_auth, password_to_scram, [Host, list_to_binary(Pass)]),
    element(1, Scram) == scram orelse fail("password_to_scram returned ~p", [Scram]),
    T0 = erlang:monotonic_time(millisecond),
    Results = [rpc:call(Node, ejabberd_auth, try_register,
                        [<<P/binary, (integer_to_binary(I))/binary>>, Host, Scram])
               || I <- lists:seq(First, First + Count - 1)],
    Created = length([ok || ok <- Results]),
    Existed = length([e || {error, exists} <- Results]),
    case [R || R <- Results, R /= ok, R /= {error, exists}] of
        [] -> ok;
        [Bad | _] = All -> fail("~b registrations failed, e.g. ~p", [length(All), Bad])
    end,
    % The first account must now log in with the password (checked by ejabberd itself).
    User1 = <<P/binary, (integer_to_binary(First))/binary>>,
    true == rpc:call(Node, ejabberd_auth, check_password, [User1, <<>>, Host, list_to_binary(Pass)])
        orelse fail("~s@~s does not accept the password", [User1, Host]),
    io:format("ejabberd accounts: ~b created, ~b already there (~s~b..~s~b@~s) in ~.2f s~n",
              [Created, Existed, Prefix, First, Prefix, First + Count - 1, HostS,
               (erlang:monotonic_time(millisecond) - T0) / 1000]);
main(_) ->
    fail("usage: ejabberd-accounts.escript NODE HOST PREFIX FIRST COUNT PASSWORD", []).

fail(Fmt, Args) ->
    io:format(standard_error, "ejabberd-accounts: " ++ Fmt ++ "~n", Args),
    halt(1).
